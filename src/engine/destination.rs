//! The destination side of COPY and ADD, as Docker (BuildKit) treats it: a destination
//! directory is found through the image's symlinks (`COPY a /linkdir/` with
//! `/linkdir -> /realdir` writes `/realdir/a`), and a directory the image already has keeps its
//! owner and mode (`COPY a.txt /tmp/` leaves `/tmp` 1777); only what the copy creates gets
//! 0:0 (or `--chown`) and, for the destination directory itself, 0755.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use fs_err as fs;

use crate::engine::copy::CopyItem;
use crate::layer::diff::{LayerTree, TreeEntry, TreeEntryKind};
use crate::layer::stack::{EntryType, MergedView};

/// Owner and permission bits a directory of the layer must end up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirOwnerMode {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// Image path -> the owner and mode its directory keeps (or, when created, gets).
pub type DirRules = BTreeMap<String, DirOwnerMode>;

fn components(path: &str) -> Vec<String> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect()
}

fn absolute(comps: &[String]) -> String {
    format!("/{}", comps.join("/"))
}

/// Resolves destination directories against one image, remembering every directory the
/// image already has on the way.
pub struct DestinationResolver<'v> {
    view: &'v MergedView,
    resolved: HashMap<String, String>,
    existing: DirRules,
}

impl<'v> DestinationResolver<'v> {
    pub fn new(view: &'v MergedView) -> Self {
        DestinationResolver { view, resolved: HashMap::new(), existing: DirRules::new() }
    }

    /// The real path of the directory `dir`: its longest prefix the image has as a directory,
    /// with symlinks followed, plus the components the copy will create.
    pub fn directory(&mut self, dir: &str) -> String {
        if let Some(real) = self.resolved.get(dir) {
            return real.clone();
        }
        let comps = components(dir);
        let mut real: Vec<String> = Vec::new();
        let mut rest = comps.as_slice();
        while let Some((first, tail)) = rest.split_first() {
            let mut candidate = real.clone();
            candidate.push(first.clone());
            match self.view.resolve(&absolute(&candidate), true) {
                Some((target, entry)) if entry.metadata_kind == EntryType::Dir => {
                    if let Ok(meta) = std::fs::metadata(&entry.host_path) {
                        self.existing.entry(absolute(&target)).or_insert(DirOwnerMode {
                            uid: meta.uid(),
                            gid: meta.gid(),
                            mode: meta.mode() & 0o7777,
                        });
                    }
                    real = target;
                    rest = tail;
                }
                _ => break,
            }
        }
        real.extend(rest.iter().cloned());
        let out = absolute(&real);
        self.resolved.insert(dir.to_string(), out.clone());
        out
    }

    /// `item`'s destination through the image's symlinks: a directory entirely; a file up to
    /// its parent, and through a final symlink to a file the image has (Docker writes the
    /// link's target); a symlink up to its parent (it replaces what is there).
    pub fn item(&mut self, item: &mut CopyItem) {
        if item.kind == EntryType::Dir {
            item.dest = self.directory(&item.dest);
            return;
        }
        let (parent, name) = item.dest.rsplit_once('/').unwrap_or(("", &item.dest));
        let parent = self.directory(if parent.is_empty() { "/" } else { parent });
        let dest = format!("{}/{name}", parent.trim_end_matches('/'));
        // Only a directory the image has can hold a symlink to follow: in one the copy
        // creates (most of a large COPY), nothing needs looking up.
        let in_image_dir = parent == "/" || self.existing.contains_key(&parent);
        let is_link =
            |view: &MergedView| view.resolve(&dest, false).is_some_and(|(_, e)| e.metadata_kind == EntryType::Symlink);
        if item.kind == EntryType::File && in_image_dir && is_link(self.view) {
            if let Some((target, entry)) = self.view.resolve(&dest, true) {
                if entry.metadata_kind == EntryType::File {
                    item.dest = absolute(&target);
                    return;
                }
            }
        }
        item.dest = dest;
    }

    /// Whether `path` (already resolved) is a directory the image has.
    pub fn has_directory(&self, path: &str) -> bool {
        self.existing.contains_key(path)
    }

    /// The directories that keep their owner and mode: the destination directory `dir` (as
    /// the text names it) and its ancestors, where the image has them. A directory copied from
    /// the sources onto one the image has takes the source's, as BuildKit's copy does.
    pub fn into_kept(mut self, dir: &str) -> DirRules {
        let real = self.directory(dir);
        let mut kept = self.existing;
        kept.retain(|path, _| path == "/" || *path == real || real.starts_with(&format!("{path}/")));
        kept
    }
}

/// Gives the directories `rules` names, where `upper` has them, their owner and mode.
pub fn apply_to_upper(upper: &Path, rules: &DirRules) -> std::io::Result<()> {
    for (path, rule) in rules {
        let host = upper.join(path.trim_start_matches('/'));
        if path == "/" || !host.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            continue;
        }
        std::os::unix::fs::lchown(&host, Some(rule.uid), Some(rule.gid))?;
        // After the chown, which clears setuid/setgid bits.
        fs::set_permissions(&host, std::fs::Permissions::from_mode(rule.mode))?;
    }
    Ok(())
}

/// The same as [`apply_to_upper`] for a layer described in memory.
pub fn apply_to_tree(tree: &mut LayerTree, rules: &DirRules) {
    for (path, rule) in rules {
        let comps = components(path);
        let mut children = &mut tree.root;
        let mut node: Option<&mut TreeEntry> = None;
        for (i, comp) in comps.iter().enumerate() {
            let Some(entry) = children.get_mut(comp.as_bytes()) else {
                break;
            };
            if i + 1 == comps.len() {
                node = Some(entry);
                break;
            }
            match &mut entry.kind {
                TreeEntryKind::Dir(next) => children = next,
                _ => break,
            }
        }
        if let Some(entry) = node.filter(|e| matches!(e.kind, TreeEntryKind::Dir(_))) {
            entry.uid = rule.uid;
            entry.gid = rule.gid;
            entry.mode = rule.mode;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn layer() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("realdir")).expect("mkdir");
        std::fs::create_dir_all(root.join("data/real")).expect("mkdir");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        std::os::unix::fs::symlink("/realdir", root.join("linkdir")).expect("symlink");
        std::os::unix::fs::symlink("real", root.join("data/rel")).expect("symlink");
        std::fs::write(root.join("file"), "x").expect("write");
        std::os::unix::fs::symlink("/file", root.join("file-link")).expect("symlink");
        dir
    }

    fn item(dest: &str, kind: EntryType) -> CopyItem {
        CopyItem::new(PathBuf::from("/nowhere"), dest.to_string(), kind)
    }

    #[test]
    fn destinations_follow_the_image_symlinks() {
        let layer = layer();
        let view = MergedView::new(&[layer.path().to_path_buf()]);
        let mut resolver = DestinationResolver::new(&view);
        let cases = [
            ("/linkdir/a.txt", EntryType::File, "/realdir/a.txt"),
            ("/linkdir", EntryType::Dir, "/realdir"),
            ("/data/rel/sub/a.txt", EntryType::File, "/data/real/sub/a.txt"),
            ("/new/deeper/x", EntryType::File, "/new/deeper/x"),
            ("/linkdir", EntryType::Symlink, "/linkdir"),
            ("/file/below", EntryType::File, "/file/below"),
            ("/file-link", EntryType::File, "/file"),
            ("/file-link", EntryType::Symlink, "/file-link"),
        ];
        for (dest, kind, want) in cases {
            let mut it = item(dest, kind);
            resolver.item(&mut it);
            assert_eq!(it.dest, want, "{dest}");
        }
        let kept = resolver.into_kept("/data/rel/sub");
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["/data", "/data/real"]);
    }

    #[test]
    fn existing_directories_keep_owner_and_mode() {
        let layer = layer();
        let view = MergedView::new(&[layer.path().to_path_buf()]);
        let resolver = DestinationResolver::new(&view);
        let rules = resolver.into_kept("/tmp");
        assert_eq!(rules["/tmp"].mode, 0o1777);
        let upper = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(upper.path().join("tmp")).expect("mkdir");
        apply_to_upper(upper.path(), &rules).expect("apply");
        let mode = std::fs::metadata(upper.path().join("tmp")).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o1777);
        let mut tree = LayerTree::default();
        let dir = TreeEntry { kind: TreeEntryKind::Dir(BTreeMap::new()), mode: 0o755, uid: 5, gid: 5, mtime: 0 };
        tree.root.insert(b"tmp".to_vec(), dir);
        apply_to_tree(&mut tree, &rules);
        let tmp = &tree.root[b"tmp".as_slice()];
        assert_eq!((tmp.mode, tmp.uid, tmp.gid), (0o1777, rules["/tmp"].uid, rules["/tmp"].gid));
    }
}

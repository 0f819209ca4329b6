//! COPY and ADD into a fresh upper dir: Docker's destination rules (a relative destination is
//! under WORKDIR; a directory source copies its contents; several sources need a directory
//! destination ending in `/`), files from the build context or from another image's merged
//! view, owner 0:0 unless `--chown`, `--chmod`, and modification times kept.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::context::{ContextEntry, EntryKind, SelectedRoot};
use crate::engine::config::resolve_workdir;
use crate::layer::diff::{LayerTree, TreeEntry, TreeEntryKind};
use crate::layer::stack::{EntryType, MergedView};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(
        "When using {keyword} with more than one source file, the destination must be a directory and end with a /"
    )]
    DestinationNotDirectory { keyword: &'static str },
    #[error("{keyword} failed: {path:?} not found in {from}")]
    SourceNotFound { keyword: &'static str, path: String, from: String },
    #[error("{keyword} failed: no source files were specified: wildcard {path:?} matched nothing in {from}")]
    NoWildcardMatch { keyword: &'static str, path: String, from: String },
    #[error("invalid --chmod {0:?}: expected an octal mode such as 755")]
    BadChmod(String),
}

/// One entry to create in the upper dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// Where its content comes from on the host.
    pub host: PathBuf,
    /// Its absolute path in the image.
    pub dest: String,
    pub kind: EntryType,
    /// For a file that is one of several hard links to one inode within one source of the
    /// instruction: (source number, device, inode). Items with the same value become hard
    /// links to one file, as Docker copies them.
    pub link: Option<(usize, u64, u64)>,
}

impl CopyItem {
    /// An item that is not hard-linked to another.
    pub fn new(host: PathBuf, dest: String, kind: EntryType) -> CopyItem {
        CopyItem { host, dest, kind, link: None }
    }

    /// The item for a context entry of source number `source`.
    fn from_context(context_root: &Path, entry: &ContextEntry, dest: String, source: usize) -> CopyItem {
        let link = entry.hardlink.map(|(dev, ino)| (source, dev, ino));
        CopyItem { host: context_root.join(&entry.path), dest, kind: entry_type(&entry.kind), link }
    }
}

/// Ownership and mode COPY applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `--chown` resolved to ids; `None` means 0:0, as Docker writes.
    pub chown: Option<(u32, u32)>,
    /// `--chmod` as permission bits.
    pub chmod: Option<u32>,
}

/// Parses `--chmod=755` (octal only, as Docker accepts).
pub fn parse_chmod(text: &str) -> Result<u32, CopyError> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| CopyError::BadChmod(text.to_string()))
}

/// The absolute destination (relative ones are under WORKDIR) and whether it names a
/// directory: it ends in `/` (or is `.`), or already is one in the image. The image is asked
/// (`is_dir_in_image`, which may have to unpack it) only when the text does not say.
/// (Several sources into anything else is an error, raised by the planners.)
pub fn destination<E>(
    workdir: &str,
    dest: &str,
    is_dir_in_image: impl FnOnce(&str) -> Result<bool, E>,
) -> Result<(String, bool), E> {
    let absolute = resolve_workdir(workdir, dest);
    let is_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || is_dir_in_image(&absolute)?;
    Ok((absolute, is_dir))
}

fn join(dest: &str, rel: &str) -> String {
    if rel.is_empty() {
        dest.to_string()
    } else {
        format!("{}/{rel}", dest.trim_end_matches('/'))
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn entry_type(kind: &EntryKind) -> EntryType {
    match kind {
        EntryKind::File => EntryType::File,
        EntryKind::Dir => EntryType::Dir,
        EntryKind::Symlink { .. } => EntryType::Symlink,
        EntryKind::Other => EntryType::Other,
    }
}

/// What to create for sources selected in the build context. With `parents` (COPY
/// --parents) every entry keeps its path relative to the context under `dest`.
pub fn plan_from_context(
    keyword: &'static str,
    context_root: &Path,
    roots: &[SelectedRoot],
    dest: &str,
    dest_is_dir: bool,
    parents: bool,
) -> Result<Vec<CopyItem>, CopyError> {
    if roots.len() > 1 && !dest_is_dir {
        return Err(CopyError::DestinationNotDirectory { keyword });
    }
    let root_item = CopyItem::new(context_root.to_path_buf(), dest.to_string(), EntryType::Dir);
    if parents {
        let mut items = vec![root_item];
        for (n, selected) in roots.iter().enumerate() {
            for e in &selected.entries {
                items.push(CopyItem::from_context(context_root, e, join(dest, &e.path), n));
            }
        }
        return Ok(items);
    }
    let mut items = vec![root_item];
    let mut dest_dir_needed = dest_is_dir;
    for (n, selected) in roots.iter().enumerate() {
        match &selected.root {
            None => {
                dest_dir_needed = true;
                for e in &selected.entries {
                    items.push(CopyItem::from_context(context_root, e, join(dest, &e.path), n));
                }
            }
            Some(root) if root.kind == EntryKind::Dir => {
                dest_dir_needed = true;
                let prefix = format!("{}/", root.path);
                for e in &selected.entries {
                    if let Some(rel) = e.path.strip_prefix(&prefix) {
                        items.push(CopyItem::from_context(context_root, e, join(dest, rel), n));
                    }
                }
            }
            Some(root) => {
                let name = selected.name.as_deref().unwrap_or_else(|| basename(&root.path));
                let target = if dest_is_dir { join(dest, name) } else { dest.to_string() };
                for e in &selected.entries {
                    items.push(CopyItem::from_context(context_root, e, target.clone(), n));
                }
            }
        }
    }
    if !dest_dir_needed {
        items.remove(0);
    }
    Ok(items)
}

/// What to create for sources read from another image or stage (`COPY --from`). A source's
/// last component may hold wildcards; a wildcard source that matches nothing is skipped, and
/// only when no source matches at all is that an error (as BuildKit). A source (or wildcard
/// match) that is a symlink is followed and copied under the link's own name (`/bin/sh` into
/// `/bin/` is `/bin/sh`, with the content of what it points to).
pub fn plan_from_image(
    keyword: &'static str,
    from: &str,
    view: &MergedView,
    sources: &[String],
    dest: &str,
    dest_is_dir: bool,
) -> Result<Vec<CopyItem>, CopyError> {
    /// (components of the entry reached, the name it is copied under, kind, host path)
    type Match = (Vec<String>, String, EntryType, PathBuf);
    let mut matched: Vec<Match> = Vec::new();
    let mut unmatched_wildcard = None;
    for src in sources {
        let (parent, name) = match src.trim_end_matches('/').rsplit_once('/') {
            Some((p, n)) => (if p.is_empty() { "/" } else { p }, n),
            None => ("/", src.trim_end_matches('/')),
        };
        if crate::context::pattern::has_glob_meta(name) {
            let found: Vec<Match> = match view.resolve(parent, true) {
                Some((comps, _)) => view
                    .read_dir(&comps)
                    .into_iter()
                    .filter(|(n, _)| crate::context::pattern::glob_match(name, &n.to_string_lossy()).unwrap_or(false))
                    .map(|(n, e)| {
                        let name = n.to_string_lossy().into_owned();
                        let mut c = comps.clone();
                        c.push(name.clone());
                        // A matched symlink is followed too (one that leads nowhere stays a link).
                        let followed = (e.metadata_kind == EntryType::Symlink)
                            .then(|| view.resolve(&format!("/{}", c.join("/")), true))
                            .flatten();
                        match followed {
                            Some((target, entry)) => (target, name, entry.metadata_kind, entry.host_path),
                            None => (c, name, e.metadata_kind, e.host_path),
                        }
                    })
                    .collect(),
                None => Vec::new(),
            };
            if found.is_empty() {
                unmatched_wildcard.get_or_insert(src);
            }
            matched.extend(found);
        } else {
            let (comps, entry) = view.resolve(src, true).ok_or_else(|| CopyError::SourceNotFound {
                keyword,
                path: src.clone(),
                from: from.to_string(),
            })?;
            matched.push((comps, name.to_string(), entry.metadata_kind, entry.host_path));
        }
    }
    if matched.is_empty() {
        if let Some(src) = unmatched_wildcard {
            return Err(CopyError::NoWildcardMatch { keyword, path: src.clone(), from: from.to_string() });
        }
    }
    if matched.len() > 1 && !dest_is_dir {
        return Err(CopyError::DestinationNotDirectory { keyword });
    }
    let mut items = Vec::new();
    for (comps, name, kind, host) in matched {
        if kind == EntryType::Dir {
            items.push(CopyItem::new(host, dest.to_string(), kind));
            walk_image_dir(view, &comps, dest, &mut items);
        } else {
            let target = if dest_is_dir { join(dest, &name) } else { dest.to_string() };
            items.push(CopyItem::new(host, target, kind));
        }
    }
    Ok(items)
}

fn walk_image_dir(view: &MergedView, comps: &[String], dest: &str, items: &mut Vec<CopyItem>) {
    for (name, entry) in view.read_dir(comps) {
        let name = name.to_string_lossy().into_owned();
        let target = join(dest, &name);
        let kind = entry.metadata_kind;
        items.push(CopyItem::new(entry.host_path, target.clone(), kind));
        if kind == EntryType::Dir {
            let mut child = comps.to_vec();
            child.push(name);
            walk_image_dir(view, &child, &target, items);
        }
    }
}

/// Creates `items` under `upper` (the step's fresh upper dir). Parent directories that do not
/// exist are made 0755 and owned like the copied files. Returns the number of entries made.
///
/// Directories are made first, in order; then files and links are copied in parallel (file
/// creation is kernel work that spreads over cores when the files sit in different
/// directories); directory modes and times are set last, deepest first, so creating their
/// contents does not move them.
pub fn materialize(upper: &Path, items: &[CopyItem], opts: &CopyOptions) -> Result<usize, CopyError> {
    use rayon::prelude::*;

    let (uid, gid) = opts.chown.unwrap_or((0, 0));
    let target_of = |item: &CopyItem| upper.join(item.dest.trim_start_matches('/'));
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    for item in items {
        let target = target_of(item);
        let parent_dir = if item.kind == EntryType::Dir { Some(target.as_path()) } else { target.parent() };
        if let Some(dir) = parent_dir {
            if item.kind == EntryType::Dir {
                if let Some(parent) = dir.parent() {
                    make_parents(upper, parent, uid, gid)?;
                }
                if target.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&target)?;
                }
                if !target.is_dir() {
                    fs::create_dir(&target)?;
                }
                dirs.push((target.clone(), fs::symlink_metadata(&item.host)?));
            } else {
                make_parents(upper, dir, uid, gid)?;
            }
        }
    }
    // A later source replaces an earlier one at the same destination: only the last is made
    // (copying both in parallel would race).
    let mut last_at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (n, item) in items.iter().enumerate().filter(|(_, item)| item.kind != EntryType::Dir) {
        last_at.insert(item.dest.as_str(), n);
    }
    let is_last = |n: usize, item: &CopyItem| last_at.get(item.dest.as_str()) == Some(&n);
    // The second and later names of a hard-linked file are linked once the first is copied.
    let mut first_names = std::collections::HashMap::new();
    let mut links: Vec<(usize, usize)> = Vec::new();
    for (n, item) in items.iter().enumerate().filter(|(n, item)| item.kind == EntryType::File && is_last(*n, item)) {
        if let Some(link) = item.link {
            let first = *first_names.entry(link).or_insert(n);
            if first != n {
                links.push((first, n));
            }
        }
    }
    let linked: std::collections::HashSet<usize> = links.iter().map(|(_, n)| *n).collect();
    items
        .par_iter()
        .enumerate()
        .filter(|(n, item)| {
            matches!(item.kind, EntryType::File | EntryType::Symlink) && is_last(*n, item) && !linked.contains(n)
        })
        .map(|(_, item)| item)
        .try_for_each(|item| -> Result<(), CopyError> {
            let target = target_of(item);
            let meta = fs::symlink_metadata(&item.host)?;
            // What is already there (an entry of an archive ADD extracted) is replaced.
            if target.symlink_metadata().is_ok() {
                fs::remove_file(&target)?;
            }
            if item.kind == EntryType::File {
                // Copies content and permission bits.
                fs::copy(&item.host, &target)?;
            } else {
                fs::os::unix::fs::symlink(fs::read_link(&item.host)?, &target)?;
            }
            finish_entry(&target, &meta, item.kind, opts, uid, gid, true)
        })?;
    for (first, n) in links {
        let target = target_of(&items[n]);
        if target.symlink_metadata().is_ok() {
            fs::remove_file(&target)?;
        }
        fs::hard_link(target_of(&items[first]), &target)?;
    }
    for (target, meta) in dirs.iter().rev() {
        finish_entry(target, meta, EntryType::Dir, opts, uid, gid, false)?;
    }
    Ok(items.len())
}

/// The layer [`materialize`] would make for `items`, described in memory so that it can be
/// written without creating a file (see [`crate::layer::diff::write_layer_tree`]). Same rules:
/// parents that `items` do not name are 0755 with the copied files' owner and `now` as mtime;
/// a later item replaces an earlier one at the same path; a directory named twice keeps the
/// first one's mode and time; `/` itself is not an entry.
pub fn layer_tree(items: &[CopyItem], opts: &CopyOptions, now: i64) -> Result<LayerTree, CopyError> {
    let (uid, gid) = opts.chown.unwrap_or((0, 0));
    let implicit_dir = || TreeEntry { kind: TreeEntryKind::Dir(BTreeMap::new()), mode: 0o755, uid, gid, mtime: now };
    let mut tree = LayerTree::default();
    let mut dirs: Vec<(Vec<Vec<u8>>, std::fs::Metadata)> = Vec::new();
    let mut named_dirs = std::collections::HashSet::new();
    for item in items {
        let comps = components(&item.dest);
        let Some((name, parents)) = comps.split_last() else {
            continue; // `/`: the root is not a layer entry
        };
        let parent = dir_entries(&mut tree.root, parents, &implicit_dir);
        if item.kind == EntryType::Dir {
            let node = parent.entry(name.clone()).or_insert_with(implicit_dir);
            if !matches!(node.kind, TreeEntryKind::Dir(_)) {
                *node = implicit_dir();
            }
            if named_dirs.insert(comps.clone()) {
                dirs.push((comps.clone(), fs::symlink_metadata(&item.host)?));
            }
        }
    }
    let mut link_numbers = std::collections::HashMap::new();
    for item in items.iter().filter(|item| matches!(item.kind, EntryType::File | EntryType::Symlink)) {
        let comps = components(&item.dest);
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        let meta = fs::symlink_metadata(&item.host)?;
        let entry = if item.kind == EntryType::File {
            let next_number = link_numbers.len() as u64;
            let link = item.link.map(|link| *link_numbers.entry(link).or_insert(next_number));
            TreeEntry {
                kind: TreeEntryKind::File { source: item.host.clone(), size: meta.len(), link },
                mode: opts.chmod.unwrap_or(meta.mode() & 0o7777),
                uid,
                gid,
                mtime: meta.mtime(),
            }
        } else {
            let target = fs::read_link(&item.host)?.into_os_string().into_encoded_bytes();
            TreeEntry { kind: TreeEntryKind::Symlink { target }, mode: 0o777, uid, gid, mtime: now }
        };
        dir_entries(&mut tree.root, parents, &implicit_dir).insert(name.clone(), entry);
    }
    for (comps, meta) in &dirs {
        if let Some((name, parents)) = comps.split_last() {
            if let Some(node) = dir_entries(&mut tree.root, parents, &implicit_dir).get_mut(name) {
                node.mode = opts.chmod.unwrap_or(meta.mode() & 0o7777);
                node.mtime = meta.mtime();
            }
        }
    }
    Ok(tree)
}

/// The components of an absolute image path, without empty ones and `.`.
fn components(dest: &str) -> Vec<Vec<u8>> {
    dest.split('/').filter(|c| !c.is_empty() && *c != ".").map(|c| c.as_bytes().to_vec()).collect()
}

/// The children of the directory at `comps`, making it and its parents (replacing anything
/// that is not a directory, as a later COPY entry replaces an earlier one).
fn dir_entries<'t>(
    mut dir: &'t mut BTreeMap<Vec<u8>, TreeEntry>,
    comps: &[Vec<u8>],
    implicit_dir: &dyn Fn() -> TreeEntry,
) -> &'t mut BTreeMap<Vec<u8>, TreeEntry> {
    for comp in comps {
        let node = dir.entry(comp.clone()).or_insert_with(implicit_dir);
        if !matches!(node.kind, TreeEntryKind::Dir(_)) {
            *node = implicit_dir();
        }
        dir = match &mut node.kind {
            TreeEntryKind::Dir(children) => children,
            _ => unreachable!("replaced by a directory just above"),
        };
    }
    dir
}

fn make_parents(upper: &Path, dir: &Path, uid: u32, gid: u32) -> Result<(), CopyError> {
    if dir == upper || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_parents(upper, parent, uid, gid)?;
    }
    fs::create_dir(dir)?;
    fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    lchown(dir, uid, gid)?;
    Ok(())
}

/// Owner, mode and modification time of a created entry. `mode_copied`: the permission bits
/// are already the source's (`fs::copy` sets them), so only `--chmod` needs a chmod.
fn finish_entry(
    target: &Path,
    source: &std::fs::Metadata,
    kind: EntryType,
    opts: &CopyOptions,
    uid: u32,
    gid: u32,
    mode_copied: bool,
) -> Result<(), CopyError> {
    lchown(target, uid, gid)?;
    if kind == EntryType::Symlink {
        return Ok(());
    }
    let mode = opts.chmod.unwrap_or(source.mode() & 0o7777);
    // lchown clears setuid/setgid bits, so those modes are set again whatever happened before.
    if !mode_copied || opts.chmod.is_some() || mode & 0o6000 != 0 {
        fs::set_permissions(target, std::fs::Permissions::from_mode(mode))?;
    }
    set_mtime(target, source.mtime(), source.mtime_nsec())
}

/// `utimensat` by path: the access time is left alone, the modification time set.
fn set_mtime(path: &Path, secs: i64, nsecs: i64) -> Result<(), CopyError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} has a NUL byte", path.display()))
    })?;
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nsecs.clamp(0, 999_999_999) as libc::c_long },
    ];
    // SAFETY: a NUL-terminated path and a two-element timespec array, as utimensat requires.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("setting the mtime of {}: {e}", path.display())).into());
    }
    Ok(())
}

fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), CopyError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| {
        std::io::Error::new(e.kind(), format!("changing the owner of {} to {uid}:{gid}: {e}", path.display()))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::BuildContext;
    use crate::layer::diff::{write_layer, write_layer_tree, DiffOptions};

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// A destination whose image lookup cannot fail.
    fn in_image(found: Result<(String, bool), std::convert::Infallible>) -> (String, bool) {
        match found {
            Ok(found) => found,
        }
    }

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("app/sub")).expect("mkdir");
        std::fs::write(root.join("app/main.py"), b"print(1)\n").expect("write");
        std::fs::write(root.join("app/sub/util.py"), b"x = 1\n").expect("write");
        std::fs::write(root.join("README.md"), b"readme\n").expect("write");
        std::fs::write(root.join("a.txt"), b"a\n").expect("write");
        std::fs::write(root.join("b.txt"), b"b\n").expect("write");
        dir
    }

    fn plan(root: &Path, srcs: &[&str], dest: &str, image: &MergedView) -> Result<Vec<(String, EntryType)>, CopyError> {
        let ctx = BuildContext::with_patterns(root, &[]).expect("context");
        let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
        let roots = ctx.select_roots(&srcs, &[]).expect("select");
        let (abs, is_dir) = in_image(destination("/work", dest, |p| Ok(image.is_dir(p))));
        Ok(plan_from_context("COPY", root, &roots, &abs, is_dir, false)?
            .into_iter()
            .map(|i| (i.dest, i.kind))
            .collect())
    }

    #[test]
    fn docker_destination_rules() {
        let ctx = context();
        let empty = MergedView::new(&[]);
        // A directory source copies its contents.
        let items = plan(ctx.path(), &["app/"], "/opt/app/", &empty).expect("plan");
        let dests: Vec<&str> = items.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dests, ["/opt/app", "/opt/app/main.py", "/opt/app/sub", "/opt/app/sub/util.py"]);
        // A file to a path not ending in / is that path; to a dir path, inside it.
        assert_eq!(
            plan(ctx.path(), &["a.txt"], "/etc/conf", &empty).expect("plan"),
            [("/etc/conf".to_string(), EntryType::File)]
        );
        assert_eq!(plan(ctx.path(), &["a.txt"], "conf/", &empty).expect("plan")[1].0, "/work/conf/a.txt");
        // Several sources need a directory destination.
        let err = plan(ctx.path(), &["*.txt"], "/one", &empty).expect_err("two files to one file");
        assert!(err.to_string().contains("must be a directory and end with a /"), "{err}");
        let two = plan(ctx.path(), &["*.txt"], "/d/", &empty).expect("plan");
        assert_eq!(two.iter().filter(|(_, k)| *k == EntryType::File).count(), 2);
    }

    #[test]
    fn parents_keep_the_context_path() {
        let ctx = context();
        let c = BuildContext::with_patterns(ctx.path(), &[]).expect("context");
        let roots = c.select_roots(&["app/sub/util.py".to_string(), "a.txt".to_string()], &[]).expect("select");
        let items = plan_from_context("COPY", ctx.path(), &roots, "/dst", true, true).expect("plan");
        let dests: Vec<&str> = items.iter().map(|i| i.dest.as_str()).collect();
        assert_eq!(dests, ["/dst", "/dst/app/sub/util.py", "/dst/a.txt"]);
    }

    #[test]
    fn an_existing_directory_in_the_image_is_a_directory_destination() {
        let ctx = context();
        let layer = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(layer.path().join("etc")).expect("mkdir");
        let image = MergedView::new(&[layer.path().to_path_buf()]);
        assert_eq!(plan(ctx.path(), &["a.txt"], "/etc", &image).expect("plan")[1].0, "/etc/a.txt");
    }

    #[test]
    fn materialize_sets_owner_mode_and_keeps_mtime() {
        if !is_root() {
            eprintln!("skipped: COPY writes files owned by 0:0 or --chown ids, which needs root");
            assert!(std::env::var("CI").is_err(), "CI runs as root: this test must not skip there");
            return;
        }
        let ctx = context();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(ctx.path().join("app/main.py"))
            .expect("open")
            .set_modified(old)
            .expect("touch");
        let upper = tempfile::tempdir().expect("tempdir");
        let empty = MergedView::new(&[]);
        let c = BuildContext::with_patterns(ctx.path(), &[]).expect("context");
        let roots = c.select_roots(&["app".to_string()], &[]).expect("select");
        let (abs, is_dir) = in_image(destination("/", "/srv/app", |p| Ok(empty.is_dir(p))));
        let items = plan_from_context("COPY", ctx.path(), &roots, &abs, is_dir, false).expect("plan");
        materialize(upper.path(), &items, &CopyOptions { chown: Some((1000, 1001)), chmod: Some(0o640) })
            .expect("copy");
        let main = upper.path().join("srv/app/main.py");
        let meta = std::fs::metadata(&main).expect("copied");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1000, 1001, 0o640));
        assert_eq!(meta.mtime(), 1_000_000);
        assert_eq!(std::fs::read(&main).expect("read"), b"print(1)\n");
        let srv = std::fs::metadata(upper.path().join("srv")).expect("parent made");
        assert_eq!((srv.uid(), srv.mode() & 0o777), (1000, 0o755));
    }

    #[test]
    fn copy_from_an_image_with_wildcards() {
        let layer = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(layer.path().join("out/bin")).expect("mkdir");
        std::fs::write(layer.path().join("out/bin/tool"), b"bin").expect("write");
        std::fs::write(layer.path().join("out/a.so"), b"a").expect("write");
        std::fs::write(layer.path().join("out/b.so"), b"b").expect("write");
        let view = MergedView::new(&[layer.path().to_path_buf()]);
        let items = plan_from_image("COPY", "build", &view, &["/out/*.so".to_string()], "/lib/", true).expect("plan");
        let dests: Vec<&str> = items.iter().map(|i| i.dest.as_str()).collect();
        assert_eq!(dests, ["/lib/a.so", "/lib/b.so"]);
        let items = plan_from_image("COPY", "build", &view, &["/out".to_string()], "/opt", false).expect("plan");
        let dests: Vec<&str> = items.iter().map(|i| i.dest.as_str()).collect();
        assert_eq!(dests, ["/opt", "/opt/a.so", "/opt/b.so", "/opt/bin", "/opt/bin/tool"]);
        let err = plan_from_image("COPY", "build", &view, &["/missing".to_string()], "/x", false).expect_err("missing");
        assert_eq!(err.to_string(), "COPY failed: \"/missing\" not found in build");
        // A wildcard matching nothing is skipped among others, an error alone.
        let srcs = ["/out/*.none".to_string(), "/out/a.*".to_string()];
        let items = plan_from_image("COPY", "build", &view, &srcs, "/lib/", true).expect("plan");
        assert_eq!(items.iter().map(|i| i.dest.as_str()).collect::<Vec<_>>(), ["/lib/a.so"]);
        let err = plan_from_image("COPY", "build", &view, &srcs[..1], "/lib/", true).expect_err("nothing");
        assert!(err.to_string().contains("wildcard \"/out/*.none\" matched nothing in build"), "{err}");
        assert!(parse_chmod("755").is_ok() && parse_chmod("9").is_err());
    }
    #[test]
    fn copy_from_an_image_names_a_followed_symlink_after_the_link() {
        let layer = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(layer.path().join("bin")).expect("mkdir");
        std::fs::write(layer.path().join("bin/busybox"), b"bb").expect("write");
        std::os::unix::fs::symlink("../bin/busybox", layer.path().join("bin/cat")).expect("symlink");
        let view = MergedView::new(&[layer.path().to_path_buf()]);
        let items = plan_from_image("COPY", "base", &view, &["/bin/cat".to_string()], "/test/", true).expect("plan");
        assert_eq!(items, [CopyItem::new(layer.path().join("bin/busybox"), "/test/cat".into(), EntryType::File)]);
        assert_eq!(view.image_path(&items[0].host).as_deref(), Some("/bin/busybox"));
        let items = plan_from_image("COPY", "base", &view, &["/bin/ca*".to_string()], "/w/", true).expect("plan");
        assert_eq!(items, [CopyItem::new(layer.path().join("bin/busybox"), "/w/cat".into(), EntryType::File)]);
    }

    #[test]
    fn a_layer_tree_writes_the_same_layer_as_materialize() {
        if !is_root() {
            eprintln!("skipped: COPY writes files owned by 0:0 or --chown ids, which needs root");
            assert!(std::env::var("CI").is_err(), "CI runs as root: this test must not skip there");
            return;
        }
        let ctx = context();
        std::os::unix::fs::symlink("main.py", ctx.path().join("app/link")).expect("symlink");
        std::fs::set_permissions(ctx.path().join("app/sub"), std::fs::Permissions::from_mode(0o750)).expect("chmod");
        std::fs::write(ctx.path().join("app/sub/b.txt"), b"another b\n").expect("write");
        // Hard links within a source are kept by both: the upper dir's walk finds them by inode.
        std::fs::hard_link(ctx.path().join("app/main.py"), ctx.path().join("app/sub/main-link.py")).expect("link");
        let c = BuildContext::with_patterns(ctx.path(), &[]).expect("context");
        let empty = MergedView::new(&[]);
        let cases: [(&[&str], &str, CopyOptions); 4] = [
            (&["app"], "/srv/app", CopyOptions::default()),
            (&["app/", "a.txt"], "/deep/er/", CopyOptions { chown: Some((1000, 1001)), chmod: None }),
            (&["*.txt", "app/main.py"], "/", CopyOptions { chown: None, chmod: Some(0o600) }),
            // The same destination twice: the later source wins.
            (&["b.txt", "app/sub/"], "/x/", CopyOptions::default()),
        ];
        let opts = DiffOptions {
            compression: crate::layer::diff::Compression::None,
            source_date_epoch: Some(2_000_000),
            ..DiffOptions::default()
        };
        for (srcs, dest, copy) in cases {
            let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
            let roots = c.select_roots(&srcs, &[]).expect("select");
            let (abs, is_dir) = in_image(destination("/", dest, |p| Ok(empty.is_dir(p))));
            let items = plan_from_context("COPY", ctx.path(), &roots, &abs, is_dir, false).expect("plan");
            let work = tempfile::tempdir().expect("tempdir");
            let upper = work.path().join("upper");
            std::fs::create_dir(&upper).expect("mkdir");
            materialize(&upper, &items, &copy).expect("materialize");
            if dest == "/srv/app" {
                let linked = |p: &str| std::fs::metadata(upper.join(p)).expect("copied").ino();
                assert_eq!(linked("srv/app/main.py"), linked("srv/app/sub/main-link.py"), "one inode");
            }
            let from_dir = write_layer(&upper, work.path(), &opts).expect("layer from the upper dir");
            let tree = layer_tree(&items, &copy, 3_000_000).expect("tree");
            let from_tree = write_layer_tree(&tree, work.path(), &opts).expect("layer from the tree");
            assert_eq!(from_tree.diff_id, from_dir.diff_id, "COPY {srcs:?} {dest}");
            assert_eq!(from_tree.uncompressed_size, from_dir.uncompressed_size);
            assert!(!from_tree.empty && from_tree.uncompressed_size > 2048, "COPY {srcs:?} {dest} wrote entries");
        }
    }
}

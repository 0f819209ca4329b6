//! The build-context walk: lists the entries of a context directory that survive
//! `.dockerignore`, in walk order (siblings sorted by name, a directory before its contents),
//! with BuildKit/fsutil's rules for descending into excluded directories.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::ignorefile::find_ignore_file;
use super::pattern::PatternMatcher;
use super::ContextError;

/// What a context entry is. Symlinks are never followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink {
        target: String,
    },
    /// Sockets, fifos, devices.
    Other,
}

/// One entry of the filtered build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// `/`-separated path relative to the context root.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size in bytes for regular files, 0 otherwise.
    pub size: u64,
    /// (device, inode) of a regular file with more than one link: entries with the same value
    /// are hard links to one file, which COPY keeps and the source digest records.
    pub hardlink: Option<(u64, u64)>,
    /// For regular files: what says the content is unchanged without reading it (see
    /// [`super::digest::ContentMemo`]); never part of a digest.
    pub stamp: Option<FileStamp>,
}

/// Inode, size, modification and change times (ns) and mode of a regular file: while all are
/// the same, so is the content (the change time cannot be set by a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
}

/// Totals of a filtered context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextSummary {
    /// Non-directory entries.
    pub files: u64,
    pub dirs: u64,
    /// Total size of the regular files.
    pub bytes: u64,
}

/// A build context directory with its ignore rules.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub root: PathBuf,
    /// The ignore file that was read, if any.
    pub ignore_file: Option<PathBuf>,
    matcher: PatternMatcher,
    /// The walk, made once per context and shared by everything that selects from it
    /// (lowering's source digests, COPY's selection, the summary).
    walked: std::sync::OnceLock<Vec<ContextEntry>>,
    /// Content digests remembered from earlier builds, used and filled by every digest of
    /// this context's files.
    memo: Option<std::sync::Arc<super::digest::ContentMemo>>,
}

fn io_error(path: &Path, err: std::io::Error) -> ContextError {
    ContextError::Io { path: path.to_path_buf(), source: err }
}

fn check_root(root: &Path) -> Result<(), ContextError> {
    let meta = fs_err::metadata(root).map_err(|err| io_error(root, err))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(ContextError::NotADirectory { path: root.to_path_buf() })
    }
}

pub(crate) fn entry_from_metadata(
    path: String,
    abs: &Path,
    meta: &std::fs::Metadata,
) -> Result<ContextEntry, ContextError> {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        EntryKind::File
    } else if file_type.is_symlink() {
        let target = fs_err::read_link(abs).map_err(|err| io_error(abs, err))?;
        let target =
            target.into_os_string().into_string().map_err(|_| ContextError::NonUtf8Path { path: abs.to_path_buf() })?;
        EntryKind::Symlink { target }
    } else {
        EntryKind::Other
    };
    let size = if kind == EntryKind::File { meta.len() } else { 0 };
    let hardlink = (kind == EntryKind::File && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    let stamp = (kind == EntryKind::File).then(|| FileStamp {
        ino: meta.ino(),
        size,
        mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
        mode: meta.mode(),
    });
    Ok(ContextEntry { path, kind, mode: meta.mode() & 0o7777, uid: meta.uid(), gid: meta.gid(), size, hardlink, stamp })
}

impl BuildContext {
    /// The same context, remembering file digests in `memo` (see
    /// [`super::digest::ContentMemo`]).
    pub fn with_memo(self, memo: std::sync::Arc<super::digest::ContentMemo>) -> Self {
        BuildContext { memo: Some(memo), ..self }
    }

    /// The memo given by [`BuildContext::with_memo`].
    pub fn memo(&self) -> Option<&super::digest::ContentMemo> {
        self.memo.as_deref()
    }

    /// Open a context directory, reading its ignore file (see [`find_ignore_file`]).
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        check_root(root)?;
        let ignore_file = find_ignore_file(root, dockerfile);
        let matcher = match &ignore_file {
            Some(path) => {
                let content = fs_err::read_to_string(path).map_err(|err| io_error(path, err))?;
                PatternMatcher::from_ignore_file(path, &content)?
            }
            None => PatternMatcher::default(),
        };
        Ok(BuildContext { root: root.to_path_buf(), ignore_file, matcher, memo: None, walked: Default::default() })
    }

    /// Open a context directory with an already-read pattern list.
    pub fn with_patterns(root: &Path, patterns: &[String]) -> Result<Self, ContextError> {
        check_root(root)?;
        Ok(BuildContext {
            root: root.to_path_buf(),
            ignore_file: None,
            matcher: PatternMatcher::new(patterns)?,
            walked: Default::default(),
            memo: None,
        })
    }

    pub fn matcher(&self) -> &PatternMatcher {
        &self.matcher
    }

    /// Included entries in walk order, `/`-separated relative paths. An excluded directory is
    /// skipped entirely unless an exception could re-include something below it; then it is
    /// walked and listed itself only if something below is included.
    pub fn walk(&self) -> Result<Vec<ContextEntry>, ContextError> {
        let no_hits = vec![false; self.matcher.patterns().len()];
        walk_dir(&self.matcher, &self.root, "", &no_hits, false)
    }

    /// [`BuildContext::walk`], made on the first call and shared by every later one: a build
    /// walks its context once.
    pub fn entries(&self) -> Result<&[ContextEntry], ContextError> {
        if let Some(entries) = self.walked.get() {
            return Ok(entries);
        }
        let entries = self.walk()?;
        Ok(self.walked.get_or_init(|| entries))
    }

    /// File count, directory count and total bytes of the filtered context.
    pub fn summary(&self) -> Result<ContextSummary, ContextError> {
        let mut summary = ContextSummary::default();
        for entry in self.entries()? {
            if entry.kind == EntryKind::Dir {
                summary.dirs += 1;
            } else {
                summary.files += 1;
                summary.bytes += entry.size;
            }
        }
        Ok(summary)
    }
}

/// Directories with at least this many entries have them stat'ed in parallel: on a warm
/// rebuild of a large context the one `statx` per entry is most of the walk.
const PARALLEL_STAT_MIN: usize = 64;

/// One entry of a directory listing on its way into the walk.
struct Child {
    rel: String,
    abs: PathBuf,
    meta: std::fs::Metadata,
    excluded: bool,
    /// Patterns that matched this directory, for the matching below it.
    hits: Vec<bool>,
    /// A directory the walk enters: included, or excluded but an exception may re-include
    /// something below it.
    descend: bool,
}

/// The walk of the directory at `abs` (relative path `rel`, empty for the root), in walk order.
/// Subdirectories are walked in parallel (rayon) and their entries joined in order.
fn walk_dir(
    matcher: &PatternMatcher,
    abs: &Path,
    rel: &str,
    parent_hits: &[bool],
    dir_excluded: bool,
) -> Result<Vec<ContextEntry>, ContextError> {
    let listing = match fs_err::read_dir(abs) {
        Ok(listing) => listing,
        // Like fsutil: an excluded directory walked only for possible exceptions may be
        // unreadable without failing the build.
        Err(err) if dir_excluded && err.kind() == std::io::ErrorKind::PermissionDenied => return Ok(Vec::new()),
        Err(err) => return Err(io_error(abs, err)),
    };
    let dirents: Vec<fs_err::DirEntry> = listing.collect::<Result<_, _>>().map_err(|err| io_error(abs, err))?;
    let stat = |dirent: &fs_err::DirEntry| {
        let meta = dirent.metadata().map_err(|err| io_error(&dirent.path(), err))?;
        Ok::<_, ContextError>((dirent.file_name(), meta))
    };
    let mut listed: Vec<(std::ffi::OsString, std::fs::Metadata)> = if dirents.len() >= PARALLEL_STAT_MIN {
        dirents.par_iter().map(stat).collect::<Result<_, _>>()?
    } else {
        dirents.iter().map(stat).collect::<Result<_, _>>()?
    };
    drop(dirents);
    listed.sort_unstable_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));

    let filtering = !matcher.is_empty();
    let mut children = Vec::with_capacity(listed.len());
    for (name, meta) in listed {
        let child_abs = abs.join(&name);
        let Some(name) = name.to_str() else {
            return Err(ContextError::NonUtf8Path { path: child_abs });
        };
        let child_rel = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
        let is_dir = meta.is_dir();
        let (decision, hits) = if filtering {
            matcher.matches_in_walk(&child_rel, parent_hits, is_dir)?
        } else {
            (super::pattern::IgnoreMatch { excluded: false, decided_by: None }, Vec::new())
        };
        let descend = is_dir && (!decision.excluded || matcher.may_reinclude_below(&child_rel));
        children.push(Child { rel: child_rel, abs: child_abs, meta, excluded: decision.excluded, hits, descend });
    }

    let below: Vec<Vec<ContextEntry>> = children
        .par_iter()
        .map(|child| match child.descend {
            true => walk_dir(matcher, &child.abs, &child.rel, &child.hits, child.excluded),
            false => Ok(Vec::new()),
        })
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(children.len() + below.iter().map(Vec::len).sum::<usize>());
    for (child, below) in children.into_iter().zip(below) {
        // An excluded directory walked for its exceptions is listed only when something below
        // it is included, just before that.
        if child.excluded && below.is_empty() {
            continue;
        }
        out.push(entry_from_metadata(child.rel, &child.abs, &child.meta)?);
        out.extend(below);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in files {
            let path = dir.path().join(file);
            if let Some(stripped) = file.strip_suffix('/') {
                std::fs::create_dir_all(dir.path().join(stripped)).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, file.as_bytes()).unwrap();
            }
        }
        dir
    }

    fn walk_paths(root: &Path, patterns: &[&str]) -> Vec<String> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        BuildContext::with_patterns(root, &patterns).unwrap().walk().unwrap().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn walk_order_is_per_directory_sorted() {
        let dir = tree(&["foo/y", "foo-x", "a"]);
        assert_eq!(walk_paths(dir.path(), &[]), ["a", "foo", "foo/y", "foo-x"].map(String::from));
    }

    #[test]
    fn excluded_dir_listed_only_when_something_below_is_included() {
        let dir = tree(&["foo/bar", "foo/baz", "foo2", "bar"]);
        assert_eq!(walk_paths(dir.path(), &["foo*", "!foo/bar"]), ["bar", "foo", "foo/bar"].map(String::from));
        let dir = tree(&["foo/baz", "bar"]);
        assert_eq!(walk_paths(dir.path(), &["foo", "!**/bar"]), ["bar"].map(String::from));
    }

    #[test]
    fn summary_counts_and_root_must_be_dir() {
        let dir = tree(&["a/b", "c"]);
        let summary = BuildContext::with_patterns(dir.path(), &[]).unwrap().summary().unwrap();
        assert_eq!((summary.files, summary.dirs, summary.bytes), (2, 1, 4));
        let err = BuildContext::open(&dir.path().join("c"), None).unwrap_err();
        assert!(err.to_string().contains("/c"), "{err}");
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tree(&["real/x"]);
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let entries = BuildContext::with_patterns(dir.path(), &[]).unwrap().walk().unwrap();
        let link = entries.iter().find(|e| e.path == "link").unwrap();
        assert_eq!(link.kind, EntryKind::Symlink { target: "real".into() });
        assert!(!entries.iter().any(|e| e.path == "link/x"));
    }
}

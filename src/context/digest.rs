//! Content digests of COPY/ADD source selections: one sha256 per entry over what the copy
//! writes (path, kind, permission bits, ownership, file content or link target — never
//! timestamps or inode numbers), combined into one selection digest. File contents are hashed
//! in parallel and streamed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::select::SelectedRoot;
use super::walk::{ContextEntry, EntryKind};
use super::ContextError;

/// The digest of a source selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDigest {
    /// `sha256:<hex>` over all entries.
    pub digest: String,
    /// Per entry, in sorted path order: path -> `sha256:<hex>` of that entry, so a cache miss
    /// can name the file that changed.
    pub files: Vec<(String, String)>,
}

/// Read buffer per worker thread; files that fit are hashed with one read.
const READ_BUFFER_SIZE: usize = 256 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUFFER_SIZE]);
}

fn hash_file_content(path: &Path) -> Result<[u8; 32], ContextError> {
    let mut hasher = Sha256::new();
    hash_file_into(path, &mut hasher)?;
    Ok(hasher.finalize().into())
}

/// Streams the content of `path` into `hasher`.
fn hash_file_into(path: &Path, hasher: &mut Sha256) -> Result<(), ContextError> {
    let io_error = |err| ContextError::Io { path: path.to_path_buf(), source: err };
    let mut file = fs_err::File::open(path).map_err(io_error)?;
    READ_BUFFER.with(|buffer| -> Result<(), ContextError> {
        let mut buffer = buffer.borrow_mut();
        loop {
            let read = match file.read(&mut buffer[..]) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(io_error(err)),
            };
            hasher.update(&buffer[..read]);
        }
    })
}

/// `link_to`: for the second and later names of a hard-linked file, the first name (in sorted
/// order) of that file in the selection.
fn entry_digest(
    host: &Path,
    entry: &ContextEntry,
    chown: Option<(u32, u32)>,
    link_to: Option<&str>,
) -> Result<String, ContextError> {
    let (uid, gid) = chown.unwrap_or((entry.uid, entry.gid));
    let mut hasher = Sha256::new();
    hasher.update(entry.path.as_bytes());
    hasher.update([0]);
    let kind_tag: &[u8] = match &entry.kind {
        EntryKind::File => b"file",
        EntryKind::Dir => b"dir",
        EntryKind::Symlink { .. } => b"symlink",
        EntryKind::Other => b"other",
    };
    hasher.update(kind_tag);
    hasher.update([0]);
    hasher.update(entry.mode.to_be_bytes());
    hasher.update(uid.to_be_bytes());
    hasher.update(gid.to_be_bytes());
    match &entry.kind {
        EntryKind::File => hasher.update(hash_file_content(host)?),
        EntryKind::Symlink { target } => hasher.update(target.as_bytes()),
        EntryKind::Dir | EntryKind::Other => {}
    }
    if let Some(first) = link_to {
        hasher.update(b"\0hardlink\0");
        hasher.update(first.as_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Digest of a COPY/ADD source selection: sha256 over, per entry in sorted path order, its
/// relative path, kind, permission bits, ownership (`chown` overrides it: what COPY --chown
/// writes), content sha256 for files and link target for symlinks, and which files are hard
/// links to one another (COPY keeps them so). Never mtime/atime/ctime or inode numbers. File
/// contents are hashed in parallel and streamed.
pub fn source_digest(
    root: &Path,
    entries: &[ContextEntry],
    chown: Option<(u32, u32)>,
) -> Result<SourceDigest, ContextError> {
    let located: Vec<(ContextEntry, PathBuf)> = entries.iter().map(|e| (e.clone(), root.join(&e.path))).collect();
    located_digest(&located, chown)
}

/// The same digest for entries whose content lives elsewhere than under one root (the files
/// `COPY --from` selects in an image's layers): each entry with the host path to read.
pub fn located_digest(
    entries: &[(ContextEntry, PathBuf)],
    chown: Option<(u32, u32)>,
) -> Result<SourceDigest, ContextError> {
    let mut ordered: Vec<&(ContextEntry, PathBuf)> = entries.iter().collect();
    ordered.sort_unstable_by(|a, b| a.0.path.cmp(&b.0.path));
    ordered.dedup_by(|a, b| a.0.path == b.0.path);
    let mut first_names: HashMap<(u64, u64), &str> = HashMap::new();
    let link_to: Vec<Option<&str>> = ordered
        .iter()
        .map(|(entry, _)| {
            let inode = entry.hardlink?;
            match first_names.get(&inode) {
                Some(first) => Some(*first),
                None => {
                    first_names.insert(inode, &entry.path);
                    None
                }
            }
        })
        .collect();
    let digests: Vec<String> = ordered
        .par_iter()
        .zip(link_to.par_iter())
        .map(|((entry, host), link_to)| entry_digest(host, entry, chown, *link_to))
        .collect::<Result<_, _>>()?;
    let mut total = Sha256::new();
    let mut files = Vec::with_capacity(ordered.len());
    for ((entry, _), digest) in ordered.into_iter().zip(digests) {
        total.update(entry.path.as_bytes());
        total.update([0]);
        total.update(digest.as_bytes());
        total.update([b'\n']);
        files.push((entry.path.clone(), digest));
    }
    Ok(SourceDigest { digest: format!("sha256:{}", hex::encode(total.finalize())), files })
}

/// Remembered classic entry hashes: the entry's selection digest (as in
/// [`SourceDigest::files`]: path, kind, mode, content, link target) -> its tarsum. The first
/// fixes the second, so a COPY that reruns because one file of thousands changed reads only
/// that file again (see [`classic_source_hash`]).
pub type TarsumMemo = HashMap<[u8; 32], [u8; 32]>;

/// The name classic `docker build` gives the sources of a COPY/ADD in its history line
/// (`COPY file:<hex> in /dst/ `): one match that is a file is `file:<hex>`, one directory
/// `dir:<hex>`, several matches `multi:<hex>`.
///
/// Written here because no crate implements it: classic docker hashes each entry as tarsum v1
/// does (moby `pkg/tarsum` over the header the docker CLI sends: the name, the mode with its
/// file-type bits, owner 0:0 as the CLI sends it, size, type flag, link target, empty user and
/// group names, device 0/0; no mtime), followed by the content; a directory's hash is sha256
/// over the sorted hex hashes of itself and everything below it joined by `,`, a multi hash
/// sha256 over the prefixed hashes of the matches, in source order.
///
/// It runs only when a COPY runs, never for a cache lookup. An entry whose selection digest is
/// in `digests` (path -> `sha256:<hex>`, the step's key inputs) and in `memo` is not read
/// again; the returned memo holds this selection's entries, for the next run.
pub fn classic_source_hash(
    root: &Path,
    roots: &[SelectedRoot],
    digests: &std::collections::BTreeMap<String, String>,
    memo: &TarsumMemo,
) -> Result<(String, TarsumMemo), ContextError> {
    let remembered = |entry: &ContextEntry| -> Option<([u8; 32], Option<[u8; 32]>)> {
        let hex_digest = digests.get(&entry.path)?.strip_prefix("sha256:")?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut key).ok()?;
        Some((key, memo.get(&key).copied()))
    };
    let mut learned = TarsumMemo::new();
    let hashes: Vec<String> = roots
        .iter()
        .map(|selected| {
            let entries: Vec<&ContextEntry> = match &selected.root {
                Some(top) if top.kind != EntryKind::Dir => vec![top],
                // The context root itself is not hashed, only what is below it.
                Some(_) | None => selected.entries.iter().filter(|e| !e.path.is_empty()).collect(),
            };
            let sums: Vec<(Option<[u8; 32]>, [u8; 32])> = entries
                .par_iter()
                .map(|e| match remembered(e) {
                    Some((key, Some(sum))) => Ok((Some(key), sum)),
                    Some((key, None)) => Ok((Some(key), classic_entry_hash(root, e)?)),
                    None => Ok((None, classic_entry_hash(root, e)?)),
                })
                .collect::<Result<_, ContextError>>()?;
            learned.extend(sums.iter().filter_map(|(key, sum)| key.map(|k| (k, *sum))));
            let mut sums: Vec<String> = sums.into_iter().map(|(_, sum)| hex::encode(sum)).collect();
            Ok(match &selected.root {
                Some(top) if top.kind != EntryKind::Dir => format!("file:{}", sums.pop().unwrap_or_default()),
                _ => {
                    sums.sort_unstable();
                    format!("dir:{}", hex::encode(Sha256::digest(sums.join(",").as_bytes())))
                }
            })
        })
        .collect::<Result<_, ContextError>>()?;
    let hash = match hashes.as_slice() {
        [one] => one.clone(),
        _ => format!("multi:{}", hex::encode(Sha256::digest(hashes.join(",").as_bytes()))),
    };
    Ok((hash, learned))
}

/// tarsum v1 of one context entry as the docker CLI puts it in the context tar.
fn classic_entry_hash(root: &Path, entry: &ContextEntry) -> Result<[u8; 32], ContextError> {
    let (type_bits, flag, link, size) = match &entry.kind {
        EntryKind::File => (0o100000, "0", "", entry.size),
        EntryKind::Dir => (0o040000, "5", "", 0),
        EntryKind::Symlink { target } => (0o120000, "2", target.as_str(), 0),
        EntryKind::Other => (0o010000, "6", "", 0),
    };
    let name = if entry.kind == EntryKind::Dir { format!("{}/", entry.path) } else { entry.path.clone() };
    let mut hasher = Sha256::new();
    let mode = (type_bits | entry.mode).to_string();
    let size = size.to_string();
    let fields: [(&str, &str); 11] = [
        ("name", &name),
        ("mode", &mode),
        ("uid", "0"),
        ("gid", "0"),
        ("size", &size),
        ("typeflag", flag),
        ("linkname", link),
        ("uname", ""),
        ("gname", ""),
        ("devmajor", "0"),
        ("devminor", "0"),
    ];
    for (key, value) in fields {
        hasher.update(key.as_bytes());
        hasher.update(value.as_bytes());
    }
    if entry.kind == EntryKind::File {
        hash_file_into(&root.join(&entry.path), &mut hasher)?;
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::BuildContext;
    use std::os::unix::fs::PermissionsExt;

    fn digest_of(root: &Path, chown: Option<(u32, u32)>) -> SourceDigest {
        let ctx = BuildContext::with_patterns(root, &[]).unwrap();
        source_digest(root, &ctx.walk().unwrap(), chown).unwrap()
    }

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), b"hello").unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; READ_BUFFER_SIZE * 2 + 3]).unwrap();
        std::os::unix::fs::symlink("d/f", dir.path().join("link")).unwrap();
        dir
    }

    #[test]
    fn content_mode_owner_and_link_target_change_it() {
        let dir = setup();
        let root = dir.path();
        let base = digest_of(root, None);
        assert_eq!(base.files.len(), 4);

        std::fs::write(root.join("d/f"), b"hellO").unwrap();
        let content = digest_of(root, None);
        assert_ne!(content.digest, base.digest);
        let changed: Vec<_> =
            base.files.iter().zip(&content.files).filter(|(a, b)| a != b).map(|(a, _)| a.0.as_str()).collect();
        assert_eq!(changed, ["d/f"]);

        std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let mode = digest_of(root, None);
        assert_ne!(mode.digest, content.digest);

        let owned = digest_of(root, Some((1234, 5678)));
        assert_ne!(owned.digest, mode.digest);

        std::fs::remove_file(root.join("link")).unwrap();
        std::os::unix::fs::symlink("d", root.join("link")).unwrap();
        assert_ne!(digest_of(root, None).digest, mode.digest);
    }

    #[test]
    fn touch_does_not_change_it_but_rename_does() {
        let dir = setup();
        let root = dir.path();
        let base = digest_of(root, None);
        let file = std::fs::File::options().write(true).open(root.join("d/f")).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        drop(file);
        assert_eq!(digest_of(root, None), base);

        std::fs::rename(root.join("d/f"), root.join("d/g")).unwrap();
        assert_ne!(digest_of(root, None).digest, base.digest);
    }

    #[test]
    fn breaking_or_making_a_hard_link_changes_it() {
        let dir = setup();
        let root = dir.path();
        std::fs::hard_link(root.join("d/f"), root.join("d/g")).unwrap();
        let linked = digest_of(root, None);
        // The same content as a separate file: another digest, named on the second name.
        std::fs::remove_file(root.join("d/g")).unwrap();
        std::fs::write(root.join("d/g"), b"hello").unwrap();
        let separate = digest_of(root, None);
        assert_ne!(separate.digest, linked.digest);
        let changed: Vec<_> =
            linked.files.iter().zip(&separate.files).filter(|(a, b)| a != b).map(|(a, _)| a.0.as_str()).collect();
        assert_eq!(changed, ["d/g"]);
        std::fs::remove_file(root.join("d/g")).unwrap();
        std::fs::hard_link(root.join("d/f"), root.join("d/g")).unwrap();
        assert_eq!(digest_of(root, None), linked);
    }

    #[test]
    fn large_files_are_streamed_consistently() {
        let dir = setup();
        let expected: [u8; 32] = Sha256::digest(vec![7u8; READ_BUFFER_SIZE * 2 + 3]).into();
        assert_eq!(hash_file_content(&dir.path().join("big")).unwrap(), expected);
    }

    /// The hashes `DOCKER_BUILDKIT=0 docker build` (20.10) wrote for these very files:
    /// `COPY f1 /dst/`, `COPY d /ddir`, `COPY f1 f2 /multi/`.
    #[test]
    fn classic_source_hashes_match_docker() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        for (path, content) in [("f1", "a\n"), ("f2", "b\n"), ("d/x", "c\n")] {
            std::fs::write(root.join(path), content).unwrap();
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ctx = BuildContext::with_patterns(root, &[]).unwrap();
        let hash = |srcs: &[&str]| {
            let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
            classic_source_hash(root, &ctx.select_roots(&srcs, &[]).unwrap(), &Default::default(), &TarsumMemo::new())
                .unwrap()
                .0
        };
        assert_eq!(hash(&["f1"]), "file:503d1c26d43ecb89daff3a6152da7e578c1e6cdc29d19999e9372774459f5459");
        assert_eq!(hash(&["d"]), "dir:a543d25e8fff3abb7032f9b1a4038b9bf652e4007e780791a706f609779903f3");
        assert_eq!(hash(&["f1", "f2"]), "multi:c5fda14f8973ea3e7c4e3f97ae14c3144d875cc3e5afd0ad72c2969d5253838f");
        assert_eq!(hash(&["f*"]), hash(&["f1", "f2"]));
    }

    /// A remembered tarsum is used instead of reading the entry again, for exactly the entries
    /// whose selection digest it was remembered under; the rest are read.
    #[test]
    fn classic_hash_reads_only_entries_the_memo_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/x"), "c\n").unwrap();
        std::fs::write(root.join("d/y"), "d\n").unwrap();
        let ctx = BuildContext::with_patterns(root, &[]).unwrap();
        let srcs = ["d".to_string()];
        let roots = ctx.select_roots(&srcs, &[]).unwrap();
        let digests: std::collections::BTreeMap<String, String> =
            source_digest(root, &ctx.select(&srcs, &[]).unwrap(), Some((0, 0))).unwrap().files.into_iter().collect();
        let (fresh, learned) = classic_source_hash(root, &roots, &digests, &TarsumMemo::new()).unwrap();
        assert_eq!(learned.len(), 3, "d, d/x and d/y are remembered");
        assert_eq!(classic_source_hash(root, &roots, &digests, &learned).unwrap(), (fresh.clone(), learned.clone()));

        // A file the memo covers is not read: delete it and the hash is still the same.
        std::fs::remove_file(root.join("d/y")).unwrap();
        assert_eq!(classic_source_hash(root, &roots, &digests, &learned).unwrap().0, fresh);
        // Without its digest it is read, and its absence is an error naming it.
        let mut partial = digests.clone();
        partial.remove("d/y");
        let err = classic_source_hash(root, &roots, &partial, &learned).unwrap_err();
        assert!(err.to_string().contains("d/y"), "{err}");
    }
}

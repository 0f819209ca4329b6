//! Content digests of COPY/ADD source selections: one sha256 per entry over what the copy
//! writes (path, kind, permission bits, ownership, file content or link target — never
//! timestamps or inode numbers), combined into one selection digest. File contents are hashed
//! in parallel and streamed, and remembered across builds by [`ContentMemo`] (a file whose
//! inode, size, times and mode have not changed is not read again).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::select::SelectedRoot;
use super::walk::{ContextEntry, EntryKind, FileStamp};
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

#[cfg(test)]
fn hash_file_content(path: &Path) -> Result<[u8; 32], ContextError> {
    let mut hasher = Sha256::new();
    hash_file_into(path, &mut [&mut hasher])?;
    Ok(hasher.finalize().into())
}

/// Streams the content of `path` into every one of `hashers` (one read for several digests).
fn hash_file_into(path: &Path, hashers: &mut [&mut Sha256]) -> Result<(), ContextError> {
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
            for hasher in hashers.iter_mut() {
                hasher.update(&buffer[..read]);
            }
        }
    })
}

/// Content digests of context files remembered from earlier builds of the same context, as
/// BuildKit's content hash cache and git's index do: a regular file whose [`FileStamp`]
/// (inode, size, modification and change times in ns, mode) is what it was is not read
/// again. Per file it holds the content sha256 (for cache keys) and the classic tarsum (for
/// the history line of a COPY that runs, see [`classic_source_hash`]), computed in one read.
///
/// A file changed within the same clock tick as its stamp could keep the stamp ("racy git"):
/// files whose change time is less than [`ContentMemo::RACY_NS`] before the memo was opened
/// are never remembered, so they are read again next time.
#[derive(Debug, Default)]
pub struct ContentMemo {
    /// What the memo file held: path -> entry and its slot in `known_used`.
    known: FastMap<String, (MemoEntry, usize)>,
    /// Per known entry: whether this build used it (it matched the file's stamp). An atomic
    /// flag rather than a map entry, so that a hit (every file of a warm rebuild, looked up
    /// from many threads) costs one hash lookup and no lock.
    known_used: Vec<AtomicBool>,
    /// Entries computed by this build (the file was read), and whether the next build may
    /// trust them (`false`: too fresh). Within one build every entry is trusted: a COPY that
    /// runs reads its hashes from here.
    learned: Mutex<FastMap<String, (MemoEntry, bool)>>,
    /// Files changed at or after this time (ns since the epoch) are not remembered.
    racy_from_ns: i64,
}

/// A hash map with a fast non-cryptographic hasher (foldhash): the memo's keys are context
/// paths, hashed hundreds of thousands of times on a large context; SipHash's resistance to
/// collisions chosen by an attacker is not needed for a map the build owns and bounds.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemoEntry {
    stamp: FileStamp,
    content: [u8; 32],
    tarsum: [u8; 32],
}

const MEMO_MAGIC: &[u8] = b"rbuild content memo 1\n";

/// Bytes of one encoded entry besides its path: the path length, five stamp numbers, two sha256s.
const MEMO_ENTRY_FIXED_LEN: usize = 8 + 5 * 8 + 32 + 32;

impl ContentMemo {
    /// How close to now a file's change time makes it too fresh to remember.
    pub const RACY_NS: i64 = 2_000_000_000;

    /// The memo [`ContentMemo::encode`] wrote, opened now; anything unreadable is an empty
    /// memo (it is a hint: the files are read).
    pub fn decode(bytes: &[u8]) -> Self {
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let mut memo = ContentMemo { racy_from_ns: now_ns - Self::RACY_NS, ..ContentMemo::default() };
        let Some(mut rest) = bytes.strip_prefix(MEMO_MAGIC) else { return memo };
        fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(head)
        }
        fn u64_of(rest: &mut &[u8]) -> Option<u64> {
            Some(u64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
        }
        // Room for as many entries as the bytes can hold with short paths (a hint only).
        memo.known.reserve(rest.len() / (MEMO_ENTRY_FIXED_LEN + 24));
        while !rest.is_empty() {
            let parsed = (|| {
                let len = usize::try_from(u64_of(&mut rest)?).ok()?;
                let path = std::str::from_utf8(take(&mut rest, len)?).ok()?.to_owned();
                let stamp = FileStamp {
                    ino: u64_of(&mut rest)?,
                    size: u64_of(&mut rest)?,
                    mtime_ns: u64_of(&mut rest)? as i64,
                    ctime_ns: u64_of(&mut rest)? as i64,
                    mode: u32::try_from(u64_of(&mut rest)?).ok()?,
                };
                let content = take(&mut rest, 32)?.try_into().ok()?;
                let tarsum = take(&mut rest, 32)?.try_into().ok()?;
                Some((path, MemoEntry { stamp, content, tarsum }))
            })();
            let Some((path, entry)) = parsed else {
                return ContentMemo { known: FastMap::default(), known_used: Vec::new(), ..memo };
            };
            let slot = memo.known_used.len();
            if memo.known.insert(path, (entry, slot)).is_none() {
                memo.known_used.push(AtomicBool::new(false));
            }
        }
        memo
    }

    /// The entries this build used, for the next build; `None` when they are exactly what
    /// was read (nothing to write).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let all_known_used = self.known_used.iter().all(|used| used.load(Ordering::Relaxed));
        if all_known_used && learned.values().all(|(_, trusted)| !trusted) {
            return None;
        }
        let known = self
            .known
            .iter()
            .filter(|(_, (_, slot))| self.known_used[*slot].load(Ordering::Relaxed))
            .map(|(path, (e, _))| (path, e));
        let fresh = learned.iter().filter(|(_, (_, trusted))| *trusted).map(|(path, (e, _))| (path, e));
        let mut out = MEMO_MAGIC.to_vec();
        for (path, e) in known.chain(fresh) {
            out.extend_from_slice(&(path.len() as u64).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            for n in [e.stamp.ino, e.stamp.size, e.stamp.mtime_ns as u64, e.stamp.ctime_ns as u64, e.stamp.mode.into()]
            {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&e.content);
            out.extend_from_slice(&e.tarsum);
        }
        Some(out)
    }

    /// The remembered entry for a regular file, if its stamp still matches.
    fn lookup(&self, entry: &ContextEntry) -> Option<MemoEntry> {
        let stamp = entry.stamp?;
        if let Some((known, slot)) = self.known.get(&entry.path).filter(|(e, _)| e.stamp == stamp) {
            self.known_used[*slot].store(true, Ordering::Relaxed);
            return Some(*known);
        }
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        learned.get(&entry.path).filter(|(e, _)| e.stamp == stamp).map(|(e, _)| *e)
    }

    fn learn(&self, entry: &ContextEntry, content: [u8; 32], tarsum: [u8; 32]) {
        let Some(stamp) = entry.stamp else { return };
        let trusted = stamp.ctime_ns < self.racy_from_ns && stamp.mtime_ns < self.racy_from_ns;
        self.learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.path.clone(), (MemoEntry { stamp, content, tarsum }, trusted));
    }

    /// Content sha256 and classic tarsum of the regular file `entry` (at `host`): remembered,
    /// or read once for both.
    fn file_hashes(&self, host: &Path, entry: &ContextEntry) -> Result<([u8; 32], [u8; 32]), ContextError> {
        if let Some(known) = self.lookup(entry) {
            return Ok((known.content, known.tarsum));
        }
        let (content, tarsum) = read_file_hashes(host, entry)?;
        self.learn(entry, content, tarsum);
        Ok((content, tarsum))
    }
}

/// Content sha256 and classic tarsum of a regular file, from one read.
fn read_file_hashes(host: &Path, entry: &ContextEntry) -> Result<([u8; 32], [u8; 32]), ContextError> {
    let mut content = Sha256::new();
    let mut tarsum = classic_header_hasher(entry);
    hash_file_into(host, &mut [&mut content, &mut tarsum])?;
    Ok((content.finalize().into(), tarsum.finalize().into()))
}

/// `link_to`: for the second and later names of a hard-linked file, the first name (in sorted
/// order) of that file in the selection.
fn entry_digest(
    host: &Path,
    entry: &ContextEntry,
    chown: Option<(u32, u32)>,
    link_to: Option<&str>,
    memo: Option<&ContentMemo>,
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
        EntryKind::File => hasher.update(match memo {
            Some(memo) => memo.file_hashes(host, entry)?.0,
            None => read_file_hashes(host, entry)?.0,
        }),
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
/// contents are hashed in parallel and streamed; with a `memo`, unchanged files are not read.
pub fn source_digest(
    root: &Path,
    entries: &[ContextEntry],
    chown: Option<(u32, u32)>,
    memo: Option<&ContentMemo>,
) -> Result<SourceDigest, ContextError> {
    let located: Vec<(ContextEntry, PathBuf)> = entries.iter().map(|e| (e.clone(), root.join(&e.path))).collect();
    digest_located(&located, chown, memo)
}

/// The same digest for entries whose content lives elsewhere than under one root (the files
/// `COPY --from` selects in an image's layers): each entry with the host path to read.
pub fn located_digest(
    entries: &[(ContextEntry, PathBuf)],
    chown: Option<(u32, u32)>,
) -> Result<SourceDigest, ContextError> {
    digest_located(entries, chown, None)
}

fn digest_located(
    entries: &[(ContextEntry, PathBuf)],
    chown: Option<(u32, u32)>,
    memo: Option<&ContentMemo>,
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
        .map(|((entry, host), link_to)| entry_digest(host, entry, chown, *link_to, memo))
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
/// It runs only when a COPY runs, never for a cache lookup; with a `memo` (which the cache
/// key's digest filled in the same read as the content sha256) no file is read again.
pub fn classic_source_hash(
    root: &Path,
    roots: &[SelectedRoot],
    memo: Option<&ContentMemo>,
) -> Result<String, ContextError> {
    let hashes: Vec<String> = roots
        .iter()
        .map(|selected| {
            let entries: Vec<&ContextEntry> = match &selected.root {
                Some(top) if top.kind != EntryKind::Dir => vec![top],
                // The context root itself is not hashed, only what is below it.
                Some(_) | None => selected.entries.iter().filter(|e| !e.path.is_empty()).collect(),
            };
            let mut sums: Vec<String> = entries
                .par_iter()
                .map(|e| classic_entry_hash(root, e, memo).map(hex::encode))
                .collect::<Result<_, ContextError>>()?;
            Ok(match &selected.root {
                Some(top) if top.kind != EntryKind::Dir => format!("file:{}", sums.pop().unwrap_or_default()),
                _ => {
                    sums.sort_unstable();
                    format!("dir:{}", hex::encode(Sha256::digest(sums.join(",").as_bytes())))
                }
            })
        })
        .collect::<Result<_, ContextError>>()?;
    Ok(match hashes.as_slice() {
        [one] => one.clone(),
        _ => format!("multi:{}", hex::encode(Sha256::digest(hashes.join(",").as_bytes()))),
    })
}

/// tarsum v1 of one context entry as the docker CLI puts it in the context tar.
fn classic_entry_hash(root: &Path, entry: &ContextEntry, memo: Option<&ContentMemo>) -> Result<[u8; 32], ContextError> {
    if entry.kind == EntryKind::File {
        let host = root.join(&entry.path);
        return Ok(match memo {
            Some(memo) => memo.file_hashes(&host, entry)?.1,
            None => read_file_hashes(&host, entry)?.1,
        });
    }
    Ok(classic_header_hasher(entry).finalize().into())
}

/// A sha256 fed with the tarsum v1 header of `entry` (the content follows for files).
fn classic_header_hasher(entry: &ContextEntry) -> Sha256 {
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
    hasher
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::BuildContext;
    use std::os::unix::fs::PermissionsExt;

    fn digest_of(root: &Path, chown: Option<(u32, u32)>) -> SourceDigest {
        let ctx = BuildContext::with_patterns(root, &[]).unwrap();
        source_digest(root, &ctx.walk().unwrap(), chown, None).unwrap()
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
            classic_source_hash(root, &ctx.select_roots(&srcs, &[]).unwrap(), None).unwrap()
        };
        assert_eq!(hash(&["f1"]), "file:503d1c26d43ecb89daff3a6152da7e578c1e6cdc29d19999e9372774459f5459");
        assert_eq!(hash(&["d"]), "dir:a543d25e8fff3abb7032f9b1a4038b9bf652e4007e780791a706f609779903f3");
        assert_eq!(hash(&["f1", "f2"]), "multi:c5fda14f8973ea3e7c4e3f97ae14c3144d875cc3e5afd0ad72c2969d5253838f");
        assert_eq!(hash(&["f*"]), hash(&["f1", "f2"]));
    }

    /// A remembered file is not read again while its stamp holds: the content digest and the
    /// classic tarsum come from the memo, and equal a fresh read's; a file whose stamp changed,
    /// or that changed too recently to trust, is read.
    #[test]
    fn the_content_memo_reads_only_files_whose_stamp_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/x"), "c\n").unwrap();
        std::fs::write(root.join("d/y"), "d\n").unwrap();
        let ctx = BuildContext::with_patterns(root, &[]).unwrap();
        let srcs = ["d".to_string()];
        let entries = ctx.select(&srcs, &[]).unwrap();
        let roots = ctx.select_roots(&srcs, &[]).unwrap();
        let fresh = source_digest(root, &entries, Some((0, 0)), None).unwrap();
        let fresh_classic = classic_source_hash(root, &roots, None).unwrap();

        // Files just written are too fresh to remember for the next build ("racy git"), but
        // within this one they are read once: the classic hash comes from the key's read.
        let racy = ContentMemo::decode(&[]);
        assert_eq!(source_digest(root, &entries, Some((0, 0)), Some(&racy)).unwrap(), fresh);
        assert_eq!(racy.encode(), None, "nothing trusted, nothing to write");
        std::fs::rename(root.join("d/x"), root.join("x-away")).unwrap();
        assert_eq!(classic_source_hash(root, &roots, Some(&racy)).unwrap(), fresh_classic, "d/x not read again");
        std::fs::rename(root.join("x-away"), root.join("d/x")).unwrap();

        let memo = ContentMemo { racy_from_ns: i64::MAX, ..ContentMemo::default() };
        assert_eq!(source_digest(root, &entries, Some((0, 0)), Some(&memo)).unwrap(), fresh);
        let bytes = memo.encode().expect("two files learned");
        let reopened = ContentMemo { racy_from_ns: i64::MAX, ..ContentMemo::decode(&bytes) };
        assert_eq!(reopened.known.len(), 2);

        // A remembered file is not read: gone from disk, its (unchanged) entry still digests.
        std::fs::remove_file(root.join("d/y")).unwrap();
        assert_eq!(source_digest(root, &entries, Some((0, 0)), Some(&reopened)).unwrap(), fresh);
        assert_eq!(classic_source_hash(root, &roots, Some(&reopened)).unwrap(), fresh_classic);
        assert_eq!(reopened.encode(), None, "the same two entries: nothing to write");
        assert!(source_digest(root, &entries, Some((0, 0)), None).is_err(), "without the memo it is read");

        // A changed file has another stamp: it is read, and the digest changes.
        std::fs::write(root.join("d/x"), "changed\n").unwrap();
        // (A context walks once; the next build opens it again.)
        let changed = BuildContext::with_patterns(root, &[]).unwrap().select(&srcs, &[]).unwrap();
        let again = source_digest(root, &changed, Some((0, 0)), Some(&reopened)).unwrap();
        assert_ne!(again.digest, fresh.digest);
        assert_eq!(again, source_digest(root, &changed, Some((0, 0)), None).unwrap());
        // Garbage is an empty memo.
        assert!(ContentMemo::decode(b"rbuild content memo 1\n\x05").known.is_empty());
    }
}

//! Test material shared by the runtime and layer tests: a busybox rootfs, capability checks
//! that skip (or fail under `CI=true`), a reference OCI layer applier independent of
//! `rbuild::layer`, and a file-by-file tree snapshot for equality checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Whether the test can run: prints why not and returns false, or panics under `CI=true`.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and this test needs {what}");
    }
    eprintln!("SKIPPED: this test needs {what}");
    false
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn busybox_path() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Builds a busybox rootfs in `dir`: the static busybox, its applet links, /etc/passwd with
/// root, app (1000) and nobody (65534), /etc/group.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = busybox_path().expect("busybox-static installed");
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "home/app"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs");
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    std::fs::copy(&busybox, dir.join("bin/busybox")).expect("copy busybox");
    let list = std::process::Command::new(&busybox).arg("--list-full").output().expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join(applet);
        if applet == "bin/busybox" || link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).expect("applet dir");
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).expect("applet link");
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n").expect("group");
    if is_root() {
        nix::unistd::chown(&dir.join("home/app"), Some(1000.into()), Some(1000.into())).expect("chown home");
    }
}

/// The uncompressed tar of a layer blob, decompressed as its media type says.
fn layer_reader(blob: &Path, media_type: &str) -> Box<dyn Read> {
    let file = std::fs::File::open(blob).expect("open blob");
    if media_type.ends_with("+gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if media_type.ends_with("+zstd") {
        Box::new(zstd::stream::read::Decoder::new(file).expect("zstd"))
    } else {
        Box::new(file)
    }
}

/// Applies an OCI layer blob onto `root` the way the image spec describes, using the `tar`
/// crate's reader (not rbuild's writer): `.wh..wh..opq` empties the directory of what lower
/// layers had, `.wh.<name>` removes `<name>`, everything else is created with its metadata.
pub fn apply_layer(blob: &Path, media_type: &str, root: &Path) {
    let mut archive = tar::Archive::new(layer_reader(blob, media_type));
    let mut dir_times = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let rel = entry.path().expect("path").into_owned();
        let name = rel.file_name().expect("name").as_bytes().to_vec();
        let parent = root.join(rel.parent().unwrap_or(Path::new("")));
        if name == b".wh..wh..opq" {
            for child in std::fs::read_dir(&parent).expect("opaque dir") {
                remove_any(&child.expect("child").path());
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            remove_any(&parent.join(std::ffi::OsStr::from_bytes(hidden)));
            continue;
        }
        let dest = root.join(&rel);
        let header = entry.header().clone();
        let kind = header.entry_type();
        if !kind.is_dir() {
            if let Ok(meta) = dest.symlink_metadata() {
                if !(meta.is_dir() && kind.is_dir()) {
                    remove_any(&dest);
                }
            }
        }
        match kind {
            tar::EntryType::Directory => {
                if !dest.is_dir() {
                    remove_any(&dest);
                    std::fs::create_dir(&dest).expect("mkdir");
                }
            }
            tar::EntryType::Regular => {
                let mut out = std::fs::File::create(&dest).expect("create");
                std::io::copy(&mut entry, &mut out).expect("copy");
            }
            tar::EntryType::Symlink => {
                let target = header.link_name().expect("link").expect("target");
                std::os::unix::fs::symlink(target, &dest).expect("symlink");
                let (uid, gid) = (header.uid().expect("uid"), header.gid().expect("gid"));
                std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32)).expect("lchown");
                continue;
            }
            tar::EntryType::Link => {
                let target = header.link_name().expect("link").expect("target");
                std::fs::hard_link(root.join(target), &dest).expect("hard link");
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let kind_bits = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(
                    header.device_major().ok().flatten().unwrap_or(0),
                    header.device_minor().ok().flatten().unwrap_or(0),
                );
                let c = std::ffi::CString::new(dest.as_os_str().as_bytes()).expect("cstr");
                // SAFETY: c is a valid NUL-terminated path.
                let rc = unsafe { libc::mknod(c.as_ptr(), kind_bits | 0o600, dev) };
                assert_eq!(rc, 0, "mknod {}", dest.display());
            }
            other => panic!("unexpected tar entry type {other:?} for {}", rel.display()),
        }
        let (uid, gid) = (header.uid().expect("uid"), header.gid().expect("gid"));
        std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32)).expect("chown");
        let mode = header.mode().expect("mode");
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).expect("chmod");
        // After chown, which clears security.capability.
        if let Some(exts) = entry.pax_extensions().expect("pax") {
            for ext in exts {
                let ext = ext.expect("pax record");
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattr::set(&dest, std::ffi::OsStr::from_bytes(name), ext.value_bytes()).expect("set xattr");
                }
            }
        }
        let mtime = header.mtime().expect("mtime") as i64;
        if kind.is_dir() {
            dir_times.push((dest, mtime));
        } else {
            set_mtime(&dest, mtime);
        }
    }
    for (dir, mtime) in dir_times.into_iter().rev() {
        set_mtime(&dir, mtime);
    }
}

fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("cstr");
    let times = [libc::timespec { tv_sec: secs, tv_nsec: 0 }, libc::timespec { tv_sec: secs, tv_nsec: 0 }];
    // SAFETY: valid path and a two-element timespec array.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
}

fn remove_any(path: &Path) {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).expect("rm -r"),
        Ok(_) => std::fs::remove_file(path).expect("rm"),
        Err(_) => {}
    }
}

/// What a tree entry is, for equality checks: type, mode, owner, size, content hash,
/// link target, device numbers, xattrs (overlay's own excluded), and for regular files the
/// group of paths sharing its inode. Mtimes (seconds) only when `with_mtime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySnap {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub links: Vec<PathBuf>,
    pub mtime: Option<i64>,
}

pub fn snapshot(root: &Path, with_mtime: bool) -> BTreeMap<PathBuf, EntrySnap> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    snapshot_dir(root, Path::new(""), with_mtime, &mut out, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            for p in paths {
                if let Some(e) = out.get_mut(p) {
                    e.links = paths.clone();
                }
            }
        }
    }
    out
}

fn snapshot_dir(
    root: &Path,
    rel: &Path,
    with_mtime: bool,
    out: &mut BTreeMap<PathBuf, EntrySnap>,
    inodes: &mut BTreeMap<(u64, u64), Vec<PathBuf>>,
) {
    let mut names: Vec<_> =
        std::fs::read_dir(root.join(rel)).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = root.join(&child);
        let meta = path.symlink_metadata().expect("lstat");
        let ft = meta.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir".to_string(), String::new())
        } else if ft.is_file() {
            let mut hasher = Sha256::new();
            let mut f = std::fs::File::open(&path).expect("open");
            std::io::copy(&mut f, &mut hasher).expect("hash");
            inodes.entry((meta.dev(), meta.ino())).or_default().push(child.clone());
            ("file".to_string(), hex::encode(hasher.finalize()))
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).expect("readlink");
            ("symlink".to_string(), target.display().to_string())
        } else if ft.is_char_device() || ft.is_block_device() {
            (
                if ft.is_char_device() { "char" } else { "block" }.to_string(),
                format!("{}:{}", libc::major(meta.rdev()), libc::minor(meta.rdev())),
            )
        } else if ft.is_fifo() {
            ("fifo".to_string(), String::new())
        } else {
            ("socket".to_string(), String::new())
        };
        let mut xattrs = BTreeMap::new();
        if let Ok(list) = xattr::list(&path) {
            for key in list {
                let k = key.to_string_lossy().to_string();
                if k.starts_with("trusted.overlay.") || k.starts_with("user.overlay.") {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(&path, &key) {
                    xattrs.insert(k, v);
                }
            }
        }
        out.insert(
            child.clone(),
            EntrySnap {
                kind,
                mode: if ft.is_symlink() { 0 } else { meta.mode() & 0o7777 },
                uid: meta.uid(),
                gid: meta.gid(),
                content,
                xattrs,
                links: Vec::new(),
                mtime: (with_mtime && !ft.is_symlink() && !ft.is_dir()).then(|| meta.mtime()),
            },
        );
        if ft.is_dir() {
            snapshot_dir(root, &child, with_mtime, out, inodes);
        }
    }
}

/// Asserts two snapshots are equal, listing every differing path.
pub fn assert_same_tree(expected: &BTreeMap<PathBuf, EntrySnap>, actual: &BTreeMap<PathBuf, EntrySnap>) {
    let mut problems = Vec::new();
    for (path, e) in expected {
        match actual.get(path) {
            None => problems.push(format!("missing {}", path.display())),
            Some(a) if a != e => problems.push(format!("differs {}: expected {e:?}, got {a:?}", path.display())),
            _ => {}
        }
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            problems.push(format!("extra {}", path.display()));
        }
    }
    assert!(problems.is_empty(), "trees differ:\n{}", problems.join("\n"));
}

/// Lists the entry names of a layer blob in order, with the type flag of each.
pub fn layer_entries(blob: &Path, media_type: &str) -> Vec<(String, char)> {
    let mut archive = tar::Archive::new(layer_reader(blob, media_type));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let path = e.path().expect("path").display().to_string();
            (path, e.header().entry_type().as_byte() as char)
        })
        .collect()
}

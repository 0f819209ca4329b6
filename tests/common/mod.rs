//! Helpers shared by the store tests: raw tar building (including malicious entries the
//! `tar` crate's safe API refuses to write), a busybox rootfs, running the binary, and skips.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One raw tar entry.
pub enum Raw<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32),
}

fn put_name(field: &mut [u8], value: &str) {
    assert!(value.len() < field.len(), "name too long for a raw header: {value}");
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}

/// A tar with exactly these entries, names written byte for byte (no sanitising).
pub fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data, kind, link): (&str, &[u8], tar::EntryType, Option<&str>) = match e {
            Raw::File(n, d) => (n, d, tar::EntryType::Regular, None),
            Raw::Dir(n) => (n, b"", tar::EntryType::Directory, None),
            Raw::Symlink(n, t) => (n, b"", tar::EntryType::Symlink, Some(t)),
            Raw::Hardlink(n, t) => (n, b"", tar::EntryType::Link, Some(t)),
            Raw::Char(n, maj, min) => {
                h.set_device_major(*maj).unwrap();
                h.set_device_minor(*min).unwrap();
                (n, b"", tar::EntryType::Char, None)
            }
        };
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        let gnu = h.as_gnu_mut().unwrap();
        put_name(&mut gnu.name, name);
        if let Some(l) = link {
            put_name(&mut gnu.linkname, l);
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (returns false) when `what` is unavailable, but fails under CI=true.
pub fn require(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {what} is not available: install it (see the test's header)");
    }
    eprintln!("SKIPPED: {what} is not available");
    false
}

pub fn have_tool(name: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Runs the rbuild binary with `RBUILD_ROOT=root`.
pub fn rbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild")).env("RBUILD_ROOT", root).env_remove("CI").args(args).output().unwrap()
}

/// Runs rbuild and asserts success; returns stdout.
pub fn rbuild_ok(root: &Path, args: &[&str]) -> String {
    let out = rbuild(root, args);
    assert!(
        out.status.success(),
        "rbuild {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A busybox rootfs tree from `/bin/busybox` (Debian's busybox-static) at `dir`.
pub fn busybox_tree(dir: &Path) -> bool {
    let bb = Path::new("/bin/busybox");
    if !require(bb.exists(), "/bin/busybox (Debian package busybox-static)") {
        return false;
    }
    for d in ["bin", "etc", "tmp", "root", "usr/bin", "usr/sbin", "sbin"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(bb, dir.join("bin/busybox")).unwrap();
    let list = Command::new(bb).arg("--list-full").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let p = dir.join(applet);
        if p.exists() || applet == "bin/busybox" {
            continue;
        }
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let depth = applet.matches('/').count();
        let target = format!("{}bin/busybox", "../".repeat(depth));
        std::os::unix::fs::symlink(target, &p).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    true
}

/// A tar of `dir` (via the system `tar`, which keeps owners, modes and links).
pub fn tar_of(dir: &Path, out: &Path) {
    let st =
        Command::new("tar").args(["--numeric-owner", "-C"]).arg(dir).arg("-cf").arg(out).arg(".").status().unwrap();
    assert!(st.success());
}

/// A listing of a tree: path, kind, mode, uid, gid, content hash or link target.
pub fn tree_listing(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&full).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let p = dir.join(&r);
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                stack.push(r.clone());
                "dir".to_owned()
            } else if ft.is_file() {
                format!("file {}", rbuild::layer::digest::Sha256Digest::of(&std::fs::read(&p).unwrap()))
            } else {
                format!("special rdev={}", m.rdev())
            };
            let mode = if ft.is_symlink() { 0 } else { m.mode() & 0o7777 };
            out.push(format!("{} {what} mode={mode:o} owner={}:{}", r.display(), m.uid(), m.gid()));
        }
    }
    out.sort();
    out
}

/// A temp dir holding a store (`<dir>/store`) with `busybox:latest` imported from the busybox
/// tree, for build tests; None (after saying why) when the machine cannot run builds: RUN steps
/// need root for their containers' overlay mounts.
pub fn store_with_busybox() -> Option<(tempfile::TempDir, PathBuf)> {
    if !require(is_root(), "root (RUN steps run in containers with overlay mounts)") {
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("rootfs");
    if !busybox_tree(&tree) {
        return None;
    }
    let tar = t.path().join("busybox.tar");
    tar_of(&tree, &tar);
    let root = t.path().join("store");
    rbuild_ok(&root, &["import", tar.to_str().unwrap(), "busybox"]);
    Some((t, root))
}

/// A store with busybox imported and a place for build contexts: what the build tests start
/// from. Each test file adds the methods it needs in its own `impl Fixture` block.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Fixture {
    /// A store with busybox imported, or None when this machine cannot run builds.
    pub fn new() -> Option<Fixture> {
        let (dir, root) = store_with_busybox()?;
        Some(Fixture { dir, root })
    }

    /// A context dir with `files` (path, content) and the Dockerfile `text`.
    pub fn context(&self, name: &str, text: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.dir.path().join(name);
        std::fs::create_dir_all(&ctx).expect("mkdir");
        std::fs::write(ctx.join("Dockerfile"), text).expect("write");
        for (path, content) in files {
            let p = ctx.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, content).expect("write");
        }
        ctx
    }
}

//! The one fixture module of the integration tests: skips (that fail under `CI=true`), running
//! the binary, the busybox rootfs and a store holding it, raw tar building (including malicious
//! entries the `tar` crate's safe API refuses to write), a reference OCI layer applier
//! independent of `rbuild::layer`, and tree listings and snapshots for equality checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

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

/// The rbuild binary under test.
pub const RBUILD: &str = env!("CARGO_BIN_EXE_rbuild");

/// A command for the rbuild binary, to which the caller adds the store, environment and args.
pub fn rbuild_command() -> Command {
    Command::new(RBUILD)
}

/// Runs the rbuild binary with `RBUILD_ROOT=root`.
pub fn rbuild(root: &Path, args: &[&str]) -> Output {
    rbuild_command().env("RBUILD_ROOT", root).env_remove("CI").args(args).output().unwrap()
}

/// The name of test `function` in `module` (a `module_path!()`) as the harness knows it, for
/// tests that run one test of this binary again in a child process (`--exact <name>`).
pub fn test_name(module: &str, function: &str) -> String {
    let path = module.split_once("::").map_or("", |(_, rest)| rest);
    format!("{path}::{function}")
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

/// The host's static busybox (Debian's busybox-static), if installed.
pub fn busybox_path() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Which accounts a busybox rootfs has besides root and nobody.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Accounts {
    /// root and nobody only: build tests add the users they need in RUN steps.
    Minimal,
    /// Also app (1000, home /home/app owned by it when root) and the group wheel (10) with app.
    WithApp,
}

/// Builds a busybox rootfs at `dir`: the static busybox, one relative link per applet, and
/// /etc/passwd and /etc/group with `accounts`. Returns false (after `require`) without busybox.
pub fn busybox_rootfs_with(dir: &Path, accounts: Accounts) -> bool {
    let Some(busybox) = busybox_path() else {
        return require(false, "/bin/busybox (Debian package busybox-static)");
    };
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs");
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    std::fs::copy(&busybox, dir.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(&busybox).arg("--list-full").output().expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = dir.join(applet);
        if applet == "bin/busybox" || link.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir_all(link.parent().expect("applet dir")).expect("applet dir");
        let target = format!("{}bin/busybox", "../".repeat(applet.matches('/').count()));
        std::os::unix::fs::symlink(target, &link).expect("applet link");
    }
    let (passwd, group) = match accounts {
        Accounts::Minimal => (
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
            "root:x:0:\nnogroup:x:65534:\n",
        ),
        Accounts::WithApp => (
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
        ),
    };
    std::fs::write(dir.join("etc/passwd"), passwd).expect("passwd");
    std::fs::write(dir.join("etc/group"), group).expect("group");
    if accounts == Accounts::WithApp {
        std::fs::create_dir_all(dir.join("home/app")).expect("mkdir home");
        if is_root() {
            std::os::unix::fs::chown(dir.join("home/app"), Some(1000), Some(1000)).expect("chown home");
        }
    }
    true
}

/// A busybox rootfs with root and nobody at `dir`; false (skipped) without busybox.
pub fn busybox_tree(dir: &Path) -> bool {
    busybox_rootfs_with(dir, Accounts::Minimal)
}

/// A busybox rootfs with root, app and nobody at `dir`, for the runtime tests (which check
/// `require` for busybox first).
pub fn busybox_rootfs(dir: &Path) {
    assert!(busybox_rootfs_with(dir, Accounts::WithApp), "busybox-static installed");
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
    let root = busybox_store(t.path())?;
    Some((t, root))
}

/// A store at `<dir>/store` with `busybox:latest` imported from the busybox tree (no root
/// needed: nothing runs); None (after `require`) without busybox.
pub fn busybox_store(dir: &Path) -> Option<PathBuf> {
    let tree = dir.join("rootfs");
    if !busybox_tree(&tree) {
        return None;
    }
    let tar = dir.join("busybox.tar");
    tar_of(&tree, &tar);
    let root = dir.join("store");
    rbuild_ok(&root, &["import", tar.to_str().unwrap(), "busybox"]);
    Some(root)
}

/// A store with busybox imported and a place for build contexts: what the build tests start
/// from. Test modules add the methods only they need in their own `impl Fixture` block.
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

    /// The flattened root filesystem of image `reference` (an ID or a tag), made once per image.
    pub fn rootfs(&self, reference: &str) -> PathBuf {
        let store = rbuild::store::ImageStore::open(&self.root).expect("store");
        let image = store.resolve(reference).expect("image");
        let dest = self.dir.path().join(format!("flat-{}", &image.id.to_string()[7..19]));
        if !dest.exists() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            store.flatten_into(&image, &dest).expect("flatten");
        }
        dest
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

/// Rootless containers get their network from pasta, which (like slirp4netns) opens
/// `/dev/net/tun` as the user: distributions make it mode 0666, some VMs 0600. While a guard
/// lives the device is open to users; the last guard restores its mode. Rootless tests that
/// run containers on the default network hold one.
pub struct TunForUsers(());

/// Live guards and the mode to restore.
static TUN_GUARDS: std::sync::Mutex<(usize, Option<u32>)> = std::sync::Mutex::new((0, None));

impl TunForUsers {
    pub fn new() -> TunForUsers {
        use std::os::unix::fs::PermissionsExt;
        let mut state = TUN_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            let tun = Path::new("/dev/net/tun");
            let mode = std::fs::metadata(tun).map(|m| m.permissions().mode() & 0o777).ok();
            state.1 = mode.filter(|m| m & 0o006 != 0o006);
            if state.1.is_some() {
                std::fs::set_permissions(tun, std::fs::Permissions::from_mode(0o666)).expect("chmod /dev/net/tun");
            }
        }
        state.0 += 1;
        TunForUsers(())
    }
}

impl Drop for TunForUsers {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let mut state = TUN_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 == 0 {
            if let Some(mode) = state.1.take() {
                let _ = std::fs::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(mode));
            }
        }
    }
}

/// A real `ssh-agent` holding one new key, stopped on drop.
pub struct SshAgentProcess {
    child: std::process::Child,
    /// The agent's socket.
    pub socket: PathBuf,
    /// Its `ssh-add -l` line for the key.
    pub fingerprint: String,
}

impl SshAgentProcess {
    /// Starts the agent at `<dir>/agent.sock` with a new key `<dir>/id_ed25519` added.
    pub fn start(dir: &Path) -> SshAgentProcess {
        let socket = dir.join("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent");
        let mut agent = SshAgentProcess { child, socket, fingerprint: String::new() };
        for _ in 0..100 {
            if agent.socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let key = dir.join("id_ed25519");
        let keygen = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "rbuild-test-key", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(keygen.success());
        let add = std::process::Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &agent.socket).output();
        assert!(add.expect("ssh-add").status.success());
        agent.fingerprint = listed_keys(&agent.socket);
        assert!(agent.fingerprint.contains("rbuild-test-key"), "{}", agent.fingerprint);
        agent
    }
}

impl Drop for SshAgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ssh-add -l` against the agent at `socket`.
pub fn listed_keys(socket: &Path) -> String {
    let out = std::process::Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", socket).output().expect("ssh-add");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

//! The overlay format, one owner: OCI layer whiteout names (`.wh.<name>`, `.wh..wh..opq`),
//! overlayfs's own markers (a 0/0 character device, the `overlay.whiteout` xattr, the opaque
//! directory xattrs of the kernel overlay, its `userxattr` mode and fuse-overlayfs), and the
//! one reader of extended attributes (rustix's `llistxattr`/`lgetxattr`; symlinks are never
//! followed).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::io::Errno;

/// Name prefix OCI layers use for a whiteout.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The opaque marker after [`WHITEOUT_PREFIX`] (`.wh.` + `.wh..opq`).
pub const OPAQUE_MARKER_SUFFIX: &str = ".wh..opq";

/// The opaque xattr rbuild sets when it unpacks a layer for the kernel overlay.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The opaque xattr of the kernel overlay in `userxattr` mode; rbuild sets it where it may not
/// set [`OPAQUE_XATTR`] (no CAP_SYS_ADMIN).
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Xattrs that mark an opaque directory (value `y`): the kernel overlay, the kernel overlay
/// with `userxattr` (rootless), fuse-overlayfs.
pub const OPAQUE_XATTRS: [&str; 3] = [OPAQUE_XATTR, USER_OPAQUE_XATTR, "user.fuseoverlayfs.opaque"];
/// The whiteout xattr of the `userxattr` overlay, on an empty file: rbuild's whiteout where it
/// may not make a 0/0 device (no CAP_MKNOD).
pub const USER_WHITEOUT_XATTR: &str = "user.overlay.whiteout";
/// Xattrs that mark an empty regular file as a whiteout (overlay "xwhiteouts", Linux >= 6.7).
pub const WHITEOUT_XATTRS: [&str; 2] = ["trusted.overlay.whiteout", USER_WHITEOUT_XATTR];
/// Xattr namespaces private to the overlay implementation (and SELinux labels), never copied
/// into a layer.
pub const PRIVATE_XATTR_PREFIXES: [&str; 4] =
    ["trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "security.selinux"];

/// Whether an entry is overlayfs's whiteout: a character device numbered 0/0.
pub fn is_whiteout_device(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// What a whiteout's name hides: `.wh.x` -> `x` (`None` for other names; the opaque marker
/// and aufs's `.wh..wh.*` metadata give their suffix, starting with `.wh.`).
pub fn whiteout_hidden(name: &[u8]) -> Option<&[u8]> {
    name.strip_prefix(WHITEOUT_PREFIX.as_bytes())
}

/// `.wh.<name>`.
pub fn whiteout_name(name: &std::ffi::OsStr) -> OsString {
    let mut wh = OsString::from(WHITEOUT_PREFIX);
    wh.push(name);
    wh
}

/// Xattr reads that mean "not there" rather than failure: no such attribute, `trusted.*`
/// without CAP_SYS_ADMIN, a filesystem without xattrs.
fn absent(e: Errno) -> bool {
    matches!(e, Errno::NODATA | Errno::PERM | Errno::NOTSUP)
}

/// The value of the xattr `name` of `path` (not following a symlink); `None` when it has none
/// or it cannot be read without privileges.
pub fn get_xattr<N: rustix::path::Arg + Copy>(path: &Path, name: N) -> io::Result<Option<Vec<u8>>> {
    let mut small = [0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(e) if absent(e) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(n) => n,
            Err(e) if absent(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(n) => {
                value.truncate(n);
                return Ok(Some(value));
            }
            Err(e) if absent(e) => return Ok(None),
            Err(Errno::RANGE) => continue, // it grew in between
            Err(e) => return Err(e.into()),
        }
    }
}

/// The names of `path`'s xattrs (not following a symlink); empty on a filesystem without them.
pub fn list_xattrs(path: &Path) -> io::Result<Vec<OsString>> {
    let mut small = [0u8; 256];
    let names = match rustix::fs::llistxattr(path, &mut small[..]) {
        Ok(n) => small[..n].to_vec(),
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::RANGE) => loop {
            let size = match rustix::fs::llistxattr_query(path) {
                Ok(n) => n,
                Err(Errno::NOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut list = vec![0u8; size];
            match rustix::fs::llistxattr(path, &mut list[..]) {
                Ok(n) => {
                    list.truncate(n);
                    break list;
                }
                Err(Errno::RANGE) => continue,
                Err(e) => return Err(e.into()),
            }
        },
        Err(e) => return Err(e.into()),
    };
    Ok(names.split(|b| *b == 0).filter(|n| !n.is_empty()).map(|n| OsString::from_vec(n.to_vec())).collect())
}

/// Which of [`OPAQUE_XATTRS`] to read, from an xattr listing into `small`: `None` when none can
/// be there; all of them when the names overflowed the buffer.
fn opaque_markers_listed(listed: Result<usize, Errno>, small: &[u8]) -> io::Result<Option<[bool; 3]>> {
    match listed {
        Ok(0) | Err(Errno::NOTSUP) => Ok(None),
        Ok(n) => Ok(Some(OPAQUE_XATTRS.map(|key| small[..n].split(|b| *b == 0).any(|name| name == key.as_bytes())))),
        Err(Errno::RANGE) => Ok(Some([true; OPAQUE_XATTRS.len()])),
        Err(e) => Err(e.into()),
    }
}

/// Whether the directory at `path` is marked opaque by one of [`OPAQUE_XATTRS`] (value `y`).
/// One `llistxattr` for the usual directory without xattrs.
pub fn is_opaque_dir(path: &Path) -> io::Result<bool> {
    let mut small = [0u8; 256];
    let listed = rustix::fs::llistxattr(path, &mut small[..]);
    let Some(wanted) = opaque_markers_listed(listed, &small)? else { return Ok(false) };
    for (key, _) in OPAQUE_XATTRS.into_iter().zip(wanted).filter(|(_, wanted)| *wanted) {
        if get_xattr(path, key)?.is_some_and(|v| v == b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`is_opaque_dir`] of a directory open for reading, through its descriptor (no path walk).
pub fn is_opaque_dir_fd(dir: impl std::os::fd::AsFd) -> io::Result<bool> {
    let mut small = [0u8; 256];
    let listed = rustix::fs::flistxattr(&dir, &mut small[..]);
    let Some(wanted) = opaque_markers_listed(listed, &small)? else { return Ok(false) };
    for (key, _) in OPAQUE_XATTRS.into_iter().zip(wanted).filter(|(_, wanted)| *wanted) {
        // The marker's value is `y`: a longer one (ERANGE here) is not the marker.
        let mut value = [0u8; 2];
        match rustix::fs::fgetxattr(&dir, key, &mut value[..]) {
            Ok(n) if &value[..n] == b"y" => return Ok(true),
            Ok(_) | Err(Errno::RANGE) => {}
            Err(e) if absent(e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Whether an (empty, regular) file carries one of [`WHITEOUT_XATTRS`].
pub fn has_whiteout_xattr(path: &Path) -> bool {
    WHITEOUT_XATTRS.into_iter().any(|x| matches!(get_xattr(path, x), Ok(Some(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_hidden(b".wh.x"), Some(&b"x"[..]));
        assert_eq!(whiteout_hidden(OPAQUE_MARKER.as_bytes()), Some(OPAQUE_MARKER_SUFFIX.as_bytes()));
        assert_eq!(whiteout_hidden(b"x.wh."), None);
        assert_eq!(whiteout_name(std::ffi::OsStr::new("a")), ".wh.a");
        assert_eq!(format!("{WHITEOUT_PREFIX}{OPAQUE_MARKER_SUFFIX}"), OPAQUE_MARKER);
    }

    #[test]
    fn xattrs_read_back_and_mark_opaque_dirs() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        assert!(!is_opaque_dir(&dir).expect("reads"));
        assert_eq!(get_xattr(&dir, "user.overlay.opaque").expect("reads"), None);
        let set = |name: &str, value: &[u8]| rustix::fs::lsetxattr(&dir, name, value, rustix::fs::XattrFlags::empty());
        if set("user.overlay.opaque", b"n").is_err() {
            eprintln!("skipped: the temp dir's filesystem has no user xattrs");
            return;
        }
        assert!(!is_opaque_dir(&dir).expect("reads"), "only `y` marks a dir opaque");
        let long = vec![b'v'; 1000];
        set("user.big", &long).expect("set");
        assert_eq!(get_xattr(&dir, "user.big").expect("reads"), Some(long));
        for n in 0..40 {
            set(&format!("user.padding-name-{n:03}"), b"").expect("set");
        }
        let names = list_xattrs(&dir).expect("lists");
        assert!(names.len() >= 42 && names.contains(&OsString::from("user.big")), "{names:?}");
        set("user.overlay.opaque", b"y").expect("set");
        assert!(is_opaque_dir(&dir).expect("reads"), "found past the list buffer");
    }
}

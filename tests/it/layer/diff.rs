//! Layer diff against hand-made upper dirs: OCI whiteout and opaque encoding, tree equality
//! through the kernel's own merged view, reproducible digests, `changes`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild::layer::diff::{changes, write_layer, Change, ChangeKind, CommittedLayer, DiffOptions};
use rbuild::layer::media::Compression;

fn mknod_whiteout(path: &Path) {
    nix::sys::stat::mknod(path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::from_bits_truncate(0o600), 0)
        .expect("mknod 0/0");
}

/// A lower dir and an upper dir as overlay would leave them after a script that: adds files,
/// modifies one, deletes a lower file, deletes and re-creates a lower dir (opaque), chmods and
/// chowns a lower file, makes hard links, symlinks, a fifo, a long path and xattrs.
fn scripted_layers(base: &Path) -> (PathBuf, PathBuf) {
    let lower = base.join("lower");
    let upper = base.join("upper");
    for d in ["etc", "data/old/deep", "keep", "gone-dir/sub"] {
        std::fs::create_dir_all(lower.join(d)).expect("mkdir");
    }
    std::fs::write(lower.join("etc/config"), "v1\n").expect("write");
    std::fs::write(lower.join("etc/remove-me"), "bye\n").expect("write");
    std::fs::write(lower.join("data/old/deep/file"), "old\n").expect("write");
    std::fs::write(lower.join("data/old/sibling"), "old\n").expect("write");
    std::fs::write(lower.join("keep/mode"), "same\n").expect("write");
    std::fs::write(lower.join("gone-dir/sub/f"), "x\n").expect("write");

    for d in ["etc", "data/old", "keep", "new/nested"] {
        std::fs::create_dir_all(upper.join(d)).expect("mkdir");
    }
    std::fs::write(upper.join("etc/config"), "v2\n").expect("write");
    mknod_whiteout(&upper.join("etc/remove-me"));
    mknod_whiteout(&upper.join("gone-dir"));
    xattr::set(upper.join("data/old"), "trusted.overlay.opaque", b"y").expect("opaque");
    std::fs::write(upper.join("data/old/fresh"), "new\n").expect("write");
    std::fs::write(upper.join("keep/mode"), "same\n").expect("write");
    std::fs::set_permissions(upper.join("keep/mode"), std::fs::Permissions::from_mode(0o4711)).expect("chmod");
    std::os::unix::fs::chown(upper.join("keep/mode"), Some(1000), Some(1000)).expect("chown");
    std::fs::write(upper.join("new/nested/a"), "hard\n").expect("write");
    std::fs::hard_link(upper.join("new/nested/a"), upper.join("new/b-link")).expect("link");
    std::os::unix::fs::symlink("../etc/config", upper.join("new/sym")).expect("symlink");
    nix::unistd::mkfifo(&upper.join("new/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo");
    let long = upper.join("new").join("l".repeat(120)).join("m".repeat(90));
    std::fs::create_dir_all(&long).expect("long dir");
    std::fs::write(long.join("file-with-a-long-path"), "deep\n").expect("write");
    // security.capability v2: cap_net_bind_service permitted+effective.
    let mut cap = vec![0u8; 20];
    cap[0..4].copy_from_slice(&0x0200_0001u32.to_le_bytes());
    cap[4..8].copy_from_slice(&(1u32 << 10).to_le_bytes());
    std::fs::write(upper.join("new/ping"), "bin\n").expect("write");
    xattr::set(upper.join("new/ping"), "security.capability", &cap).expect("setcap");
    xattr::set(upper.join("new/ping"), "user.note", b"hello").expect("user xattr");
    (lower, upper)
}

/// Mounts a read-only overlay of `upper` over `lower` at `target`; unmounted on drop.
struct MergedView(PathBuf);

impl MergedView {
    fn mount(lower: &Path, upper: &Path, target: &Path) -> Self {
        std::fs::create_dir_all(target).expect("mkdir merged");
        let opts = format!("lowerdir={}:{}", upper.display(), lower.display());
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .expect("mount read-only overlay");
        MergedView(target.to_path_buf())
    }
}

impl Drop for MergedView {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp -a");
    assert!(status.success());
}

fn commit(upper: &Path, out: &Path, opts: &DiffOptions) -> CommittedLayer {
    write_layer(upper, out, opts).expect("write_layer")
}

#[test]
fn whiteouts_and_opaque_dirs_follow_the_oci_spec_and_apply_to_the_merged_view() {
    if !crate::fixture::require(crate::fixture::is_root(), "root (mknod 0/0, trusted.* xattrs, overlay mount)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper) = scripted_layers(tmp.path());
    let out = tmp.path().join("blobs");
    std::fs::create_dir(&out).expect("mkdir");
    let layer = commit(&upper, &out, &DiffOptions::default());
    assert!(!layer.empty);
    assert!(layer.digest.starts_with("sha256:") && layer.diff_id.starts_with("sha256:"));
    assert_eq!(layer.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(std::fs::metadata(&layer.path).expect("blob").len(), layer.compressed_size);

    let entries = crate::fixture::layer_entries(&layer.path, layer.media_type);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} not in {names:?}"));
    // The opaque marker follows its directory at once; whiteouts come before siblings.
    assert_eq!(pos("data/old/.wh..wh..opq"), pos("data/old/") + 1);
    assert_eq!(pos(".wh.gone-dir"), 0);
    assert!(pos("etc/.wh.remove-me") < pos("etc/config"));
    assert!(!names.iter().any(|n| n.contains("remove-me") && !n.contains(".wh.")));
    // Hard links stay links, to the first path written.
    let link = entries.iter().find(|(n, _)| n == "new/nested/a" || n == "new/b-link");
    assert_eq!(link.map(|(_, t)| *t), Some('0'));
    assert_eq!(entries[pos("new/nested/a")].1, '1');
    assert!(names.iter().any(|n| n.len() > 200), "long path kept through PAX");
    // Entries are sorted within each directory.
    let top: Vec<&str> = names.iter().filter(|n| !n.trim_end_matches('/').contains('/')).copied().collect();
    assert_eq!(top, vec![".wh.gone-dir", "data/", "etc/", "keep/", "new/"]);

    let merged = MergedView::mount(&lower, &upper, &tmp.path().join("merged"));
    let applied = tmp.path().join("applied");
    copy_tree(&lower, &applied);
    crate::fixture::apply_layer(&layer.path, layer.media_type, &applied);
    crate::fixture::assert_same_tree(
        &crate::fixture::snapshot(&merged.0, true),
        &crate::fixture::snapshot(&applied, true),
    );
}

#[test]
fn same_tree_gives_the_same_digest_with_source_date_epoch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("a/b")).expect("mkdir");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(upper.join("a/b/big"), &big).expect("write");
    std::fs::write(upper.join("a/small"), "x").expect("write");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");

    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut opts =
            DiffOptions { compression, source_date_epoch: Some(1_000_000_000), threads: 1, ..DiffOptions::default() };
        let first = commit(&upper, &out, &opts);
        // Touch everything: later mtimes are clamped to the epoch.
        let status = std::process::Command::new("touch")
            .arg(upper.join("a/small"))
            .arg(upper.join("a/b/big"))
            .status()
            .expect("touch");
        assert!(status.success());
        opts.threads = 2;
        let second = commit(&upper, &out, &opts);
        assert_eq!(first.digest, second.digest, "{compression:?}");
        assert_eq!(first.diff_id, second.diff_id);
        assert_eq!(first.media_type, compression.media_type());
        assert_ne!(first.path, second.path);
        let applied = tmp.path().join(format!("applied-{compression:?}"));
        std::fs::create_dir(&applied).expect("mkdir");
        crate::fixture::apply_layer(&second.path, second.media_type, &applied);
        assert_eq!(std::fs::read(applied.join("a/b/big")).expect("read"), big);
    }
}

#[test]
fn diff_id_is_the_sha256_of_the_uncompressed_tar() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("d")).expect("mkdir");
    std::fs::write(upper.join("d/f"), "content").expect("write");
    let plain = commit(&upper, tmp.path(), &DiffOptions { compression: Compression::None, ..DiffOptions::default() });
    let gz = commit(&upper, tmp.path(), &DiffOptions::default());
    assert_eq!(plain.digest, plain.diff_id);
    assert_eq!(plain.diff_id, gz.diff_id);
    assert_eq!(plain.uncompressed_size, gz.uncompressed_size);
    let bytes = std::fs::read(&plain.path).expect("read");
    use sha2::Digest;
    assert_eq!(plain.digest, format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))));
    // GNU gzip reads the multi-member gzip blob as one stream.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | sha256sum", gz.path.display()))
        .output()
        .expect("gzip");
    assert!(out.status.success());
    let hex = plain.diff_id.trim_start_matches("sha256:");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(hex));
    // GNU tar reads it too.
    let out = std::process::Command::new("tar").arg("-tvf").arg(&plain.path).output().expect("tar");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("d/f"));
}

#[test]
fn an_empty_upper_dir_is_an_empty_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    std::fs::create_dir(&upper).expect("mkdir");
    let layer = commit(&upper, tmp.path(), &DiffOptions::default());
    assert!(layer.empty);
    assert_eq!(layer.uncompressed_size, 1024);
}

#[test]
fn write_layer_leaves_no_file_when_the_upper_dir_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let err = write_layer(&tmp.path().join("nope"), &out, &DiffOptions::default()).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(std::fs::read_dir(&out).expect("read_dir").count(), 0);
}

#[test]
fn wh_files_are_whiteouts_only_from_fuse_overlayfs_and_refused_otherwise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(upper.join("d")).expect("mkdir");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(upper.join("d/.wh.gone"), "").expect("write");
    std::fs::write(upper.join("d/.wh..wh..opq"), "").expect("write");
    // A kernel-overlay upper dir or a COPY: a file with that name is refused, naming it.
    let err = write_layer(&upper, &out, &DiffOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/d/.wh.") && err.to_string().contains("reserved"), "{err}");
    assert_eq!(std::fs::read_dir(&out).expect("read_dir").count(), 0, "a partial blob was left");
    // fuse-overlayfs writes such files as its whiteouts: they are encoded as whiteouts.
    let opts = DiffOptions { compression: Compression::None, whiteout_files: true, ..DiffOptions::default() };
    let layer = commit(&upper, &out, &opts);
    let listing = std::process::Command::new("tar").arg("-tf").arg(&layer.path).output().expect("tar");
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert_eq!(names.lines().collect::<Vec<_>>(), vec!["d/", "d/.wh..wh..opq", "d/.wh.gone"], "{names}");
}

#[test]
fn changes_lists_added_changed_and_deleted_paths() {
    if !crate::fixture::require(crate::fixture::is_root(), "root (mknod 0/0, trusted.* xattrs)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper) = scripted_layers(tmp.path());
    let list = changes(&upper, &[lower]).expect("changes");
    let has = |kind: ChangeKind, p: &str| {
        assert!(list.contains(&Change { kind, path: PathBuf::from(p) }), "{kind:?} {p} not in {list:#?}")
    };
    has(ChangeKind::Changed, "/etc");
    has(ChangeKind::Changed, "/etc/config");
    has(ChangeKind::Deleted, "/etc/remove-me");
    has(ChangeKind::Deleted, "/gone-dir");
    has(ChangeKind::Changed, "/data/old");
    has(ChangeKind::Deleted, "/data/old/deep");
    has(ChangeKind::Deleted, "/data/old/sibling");
    has(ChangeKind::Added, "/data/old/fresh");
    has(ChangeKind::Added, "/new");
    has(ChangeKind::Added, "/new/sym");
    has(ChangeKind::Changed, "/keep/mode");
    assert_eq!(ChangeKind::Deleted.letter(), 'D');
}

/// A layer's unpacked size is what Docker's overlay2 counts: file contents and symlink
/// targets, a hard link's data once, nothing for directories; and with a host id map the
/// entries carry the container ids the host ids map back to.
#[test]
fn unpacked_size_and_host_ids() {
    use rbuild::layer::diff::{HostIdMap, IdRange, OVERFLOW_ID};
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("d")).expect("mkdir");
    std::fs::write(upper.join("d/a"), "12345").expect("write");
    std::fs::hard_link(upper.join("d/a"), upper.join("d/a2")).expect("link");
    std::os::unix::fs::symlink("../d/a", upper.join("l")).expect("symlink");
    let layer = commit(&upper, tmp.path(), &DiffOptions::default());
    assert_eq!(layer.unpacked_size, 5 + "../d/a".len() as u64);

    if !crate::fixture::require(crate::fixture::is_root(), "root to give files other owners") {
        return;
    }
    std::os::unix::fs::lchown(upper.join("d/a"), Some(100_999), Some(100_999)).expect("chown");
    std::os::unix::fs::lchown(upper.join("l"), Some(4242), Some(4242)).expect("chown");
    let ranges =
        vec![IdRange { container: 0, host: 0, count: 1 }, IdRange { container: 1, host: 100_000, count: 65536 }];
    let opts =
        DiffOptions { host_ids: Some(HostIdMap { uids: ranges.clone(), gids: ranges }), ..DiffOptions::default() };
    let layer = commit(&upper, tmp.path(), &opts);
    let out =
        std::process::Command::new("tar").arg("--numeric-owner").arg("-tvzf").arg(&layer.path).output().expect("tar");
    let listing = String::from_utf8_lossy(&out.stdout);
    let owner = |name: &str| {
        let line = listing.lines().find(|l| l.ends_with(name) || l.contains(&format!("{name} ->"))).expect(name);
        line.split_whitespace().nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(owner("d/a"), "1000/1000", "{listing}");
    assert_eq!(owner("l"), format!("{OVERFLOW_ID}/{OVERFLOW_ID}"), "{listing}");
    assert_eq!(owner("d/"), "0/0", "{listing}");
}

/// With the overlay's lower dirs given (a RUN's commit), what only looks like a change in the
/// upper dir is left out, as BuildKit's differ and the chroot-snapshot mode leave it out: a
/// file overlayfs copied up because it was opened for writing (same mode, owner, size, mtime,
/// xattrs), and the opaque marker of a directory no lower has (dpkg's renamed `.dpkg-new`
/// dirs). A real change, or an opaque dir that hides lower content, stays.
#[test]
fn copy_ups_and_opaque_markers_that_change_nothing_are_left_out_given_the_lowers() {
    if !crate::fixture::require(crate::fixture::is_root(), "root (trusted.* xattrs)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    for d in ["etc", "var/old"] {
        std::fs::create_dir_all(lower.join(d)).expect("mkdir");
        std::fs::create_dir_all(upper.join(d)).expect("mkdir");
    }
    std::fs::write(lower.join("etc/.pwd.lock"), "").expect("write");
    std::fs::write(lower.join("etc/passwd"), "root\n").expect("write");
    std::fs::write(lower.join("var/old/f"), "x\n").expect("write");
    // A copy-up (cp -p keeps mode, owner and times) and a real change beside it.
    let copied = std::process::Command::new("cp")
        .arg("-p")
        .arg(lower.join("etc/.pwd.lock"))
        .arg(upper.join("etc/"))
        .status()
        .expect("cp -p");
    assert!(copied.success());
    std::fs::write(upper.join("etc/passwd"), "root\napp\n").expect("write");
    // A new directory marked opaque (renamed into place) and an opaque one hiding lower files.
    std::fs::create_dir_all(upper.join("usr/share/doc/curl")).expect("mkdir");
    std::fs::write(upper.join("usr/share/doc/curl/copyright"), "c\n").expect("write");
    xattr::set(upper.join("usr/share/doc/curl"), "trusted.overlay.opaque", b"y").expect("opaque");
    xattr::set(upper.join("var/old"), "trusted.overlay.opaque", b"y").expect("opaque");
    let names = |opts: &DiffOptions| {
        let out = tmp.path().join(format!("blobs-{}", opts.lowers.len()));
        std::fs::create_dir_all(&out).expect("mkdir");
        let layer = commit(&upper, &out, opts);
        crate::fixture::layer_entries(&layer.path, layer.media_type).into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    let plain = names(&DiffOptions::default());
    assert!(plain.contains(&"etc/.pwd.lock".to_string()) && plain.contains(&"usr/share/doc/curl/.wh..wh..opq".into()));
    let given = names(&DiffOptions { lowers: vec![lower.clone()], ..DiffOptions::default() });
    assert_eq!(
        given,
        [
            "etc/",
            "etc/passwd",
            "usr/",
            "usr/share/",
            "usr/share/doc/",
            "usr/share/doc/curl/",
            "usr/share/doc/curl/copyright",
            "var/",
            "var/old/",
            "var/old/.wh..wh..opq"
        ]
        .map(String::from)
    );
}

/// A lower layer's symlink is never followed out of the store when the commit compares a
/// copy-up with the lower file: with `etc-link -> /etc` in a lower layer and the upper dir
/// holding `etc-link/passwd` equal to the host's `/etc/passwd` (same mode, owner, size and
/// times), the file is a change and stays in the layer (a lookup through the link would have
/// compared it with the host's file and left it out).
#[test]
fn a_lower_layers_symlink_does_not_lead_the_copy_up_check_to_host_files() {
    if !crate::fixture::require(crate::fixture::is_root(), "root (cp -p keeps root's ownership)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    std::fs::create_dir_all(&lower).expect("mkdir");
    std::fs::create_dir_all(upper.join("etc-link")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", lower.join("etc-link")).expect("symlink");
    let copied = std::process::Command::new("cp")
        .arg("-p")
        .arg("/etc/passwd")
        .arg(upper.join("etc-link/"))
        .status()
        .expect("cp");
    assert!(copied.success());
    let out = tmp.path().join("blobs");
    std::fs::create_dir(&out).expect("mkdir");
    let layer = commit(&upper, &out, &DiffOptions { lowers: vec![lower], ..DiffOptions::default() });
    let names: Vec<String> =
        crate::fixture::layer_entries(&layer.path, layer.media_type).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"etc-link/passwd".to_string()), "{names:?}");
}

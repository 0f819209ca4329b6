//! Interop with skopeo and umoci, both ways. rbuild's store is read by
//! `skopeo inspect oci:$RBUILD_ROOT:name:tag`, copied by `skopeo copy` to docker-archive and
//! OCI archives (plain, gzip, zstd) and unpacked by `umoci unpack`; the archives skopeo wrote
//! are loaded by `rbuild load` and their rootfs equals the expected tree file by file
//! (content, mode, owner, symlink targets, whiteouts applied).
//! Needs the Debian packages skopeo, umoci and busybox-static, and root (ownership, device
//! nodes); skips without them, fails under CI=true.

use crate::fixture::{busybox_tree, have_tool, is_root, rbuild_ok, require, tar_of, tree_listing};
use rbuild::layer::digest::Sha256Digest;
use rbuild::store::{ImageReference, ImageStore, LayerBlob, PutImage};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

fn ready() -> bool {
    require(is_root(), "root")
        && require(have_tool("skopeo"), "skopeo (Debian package skopeo)")
        && require(have_tool("umoci"), "umoci (Debian package umoci)")
}

/// Layer 1: busybox plus a data dir with owners, modes, links. Layer 2: whiteouts, an opaque
/// dir and new files. Returns the expected final tree.
fn build_image(t: &Path, root: &Path) -> Option<std::path::PathBuf> {
    let tree = t.join("tree");
    if !busybox_tree(&tree) {
        return None;
    }
    let data = tree.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a"), "alpha\n").unwrap();
    std::fs::set_permissions(data.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
    chown(&data.join("a"), 1000, 1001);
    std::fs::write(data.join("b"), "to be deleted\n").unwrap();
    std::fs::write(data.join("sub/c"), "hidden by opaque\n").unwrap();
    std::fs::write(data.join("suid"), "x").unwrap();
    std::fs::set_permissions(data.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    symlink("a", data.join("link")).unwrap();
    chown(&data.join("link"), 7, 8);
    std::fs::hard_link(data.join("a"), data.join("hl")).unwrap();
    let layer1 = t.join("layer1.tar");
    tar_of(&tree, &layer1);

    // Layer 2 and the expected tree.
    let expected = t.join("expected");
    run(Command::new("cp").arg("-a").arg(&tree).arg(&expected));
    std::fs::remove_file(expected.join("data/b")).unwrap();
    std::fs::remove_file(expected.join("data/sub/c")).unwrap();
    std::fs::write(expected.join("data/sub/new"), "new\n").unwrap();
    std::fs::write(expected.join("etc/motd"), "hello\n").unwrap();
    std::fs::set_permissions(expected.join("etc/motd"), std::fs::Permissions::from_mode(0o600)).unwrap();
    chown(&expected.join("etc/motd"), 2, 2);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, body: &[u8], mode: u32, uid: u64, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, body).unwrap();
    };
    let meta = |p: &str| std::fs::metadata(tree.join(p)).unwrap();
    use std::os::unix::fs::MetadataExt;
    add("data/", b"", meta("data").mode() & 0o7777, 0, tar::EntryType::Directory);
    add("data/.wh.b", b"", 0o644, 0, tar::EntryType::Regular);
    add("data/sub/", b"", meta("data/sub").mode() & 0o7777, 0, tar::EntryType::Directory);
    add("data/sub/.wh..wh..opq", b"", 0o644, 0, tar::EntryType::Regular);
    add("data/sub/new", b"new\n", 0o644, 0, tar::EntryType::Regular);
    add("etc/motd", b"hello\n", 0o600, 2, tar::EntryType::Regular);
    let layer2 = b.into_inner().unwrap();
    // Keep the dir mtimes out of the comparison's way: same modes/owners as layer 1.

    let store = ImageStore::open(root).unwrap();
    let work = store.work_dir().unwrap();
    let mut layers = Vec::new();
    for bytes in [std::fs::read(&layer1).unwrap(), layer2] {
        let mut w = work.blob_writer(&store).unwrap();
        w.write_all(&bytes).unwrap();
        let (digest, size) = w.commit(None).unwrap();
        layers.push(LayerBlob {
            diff_id: digest.clone(),
            digest,
            size,
            media_type: oci_spec::image::MediaType::ImageLayer,
            unpacked_size: None,
        });
    }
    let config = serde_json::json!({
        "architecture": rbuild::store::import::go_arch(), "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "layer 1"}, {"created": "2024-01-01T00:00:00Z", "created_by": "layer 2"}],
    });
    let tags = vec![ImageReference::parse("multi:1").unwrap()];
    store.put_image_raw(config.to_string().as_bytes(), &layers, &PutImage { tags, parent: None }).unwrap();
    drop(work);
    Some(expected)
}

fn flatten(root: &Path, name: &str, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let store = ImageStore::open(root).unwrap();
    let image = store.resolve(name).unwrap();
    store.flatten_into(&image, dest).unwrap();
}

#[test]
fn skopeo_and_umoci_read_what_rbuild_writes_and_rbuild_loads_what_skopeo_writes() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let Some(expected) = build_image(t.path(), &root) else {
        return;
    };
    let want = tree_listing(&expected);

    // skopeo reads the store as an OCI layout.
    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:multi:1", root.display()))))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    // umoci unpacks it with the whiteouts applied.
    let bundle = t.path().join("bundle");
    run(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:multi:1", root.display())).arg(&bundle));
    assert_eq!(tree_listing(&bundle.join("rootfs")), want, "umoci unpack of the rbuild store");

    // skopeo writes archives in every flavour; rbuild loads them.
    let src = format!("oci:{}:multi:1", root.display());
    let flavours: Vec<(&str, Vec<&str>)> = vec![
        ("docker-archive", vec![]),
        ("oci-archive", vec![]),
        ("oci-archive", vec!["--dest-compress"]),
        ("oci-archive", vec!["--dest-compress", "--dest-compress-format", "zstd"]),
    ];
    for (i, (transport, flags)) in flavours.iter().enumerate() {
        let archive = t.path().join(format!("skopeo-{i}.tar"));
        run(Command::new("skopeo")
            .arg("copy")
            .args(flags)
            .arg(&src)
            .arg(format!("{transport}:{}:multi:1", archive.display())));
        let root2 = t.path().join(format!("store-{i}"));
        let out = rbuild_ok(&root2, &["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: multi:1\n", "{transport} {flags:?}");
        let rootfs = t.path().join(format!("rootfs-{i}"));
        flatten(&root2, "multi:1", &rootfs);
        assert_eq!(tree_listing(&rootfs), want, "rootfs of {transport} {flags:?} loaded by rbuild");
        rbuild_ok(&root2, &["store", "check"]);
        // Unpacked as overlay lower dirs too: whiteouts become 0/0 char devices and opaque xattrs.
        let store2 = ImageStore::open(&root2).unwrap();
        let dirs = store2.ensure_unpacked(&store2.resolve("multi:1").unwrap()).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let wh = std::fs::symlink_metadata(dirs[1].join("data/b")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        let mut buf = [0u8; 4];
        let n = rustix::fs::lgetxattr(dirs[1].join("data/sub"), "trusted.overlay.opaque", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
    }

    // rbuild save (docker-archive + OCI layout, and plain OCI) is read by skopeo and umoci.
    for format in ["docker", "oci"] {
        let archive = t.path().join(format!("rbuild-{format}.tar"));
        rbuild_ok(&root, &["save", "--format", format, "-o", archive.to_str().unwrap(), "multi:1"]);
        let transport = if format == "docker" { "docker-archive" } else { "oci-archive" };
        let reference = if format == "docker" {
            format!("{transport}:{}", archive.display())
        } else {
            format!("{transport}:{}:1", archive.display())
        };
        let layout = t.path().join(format!("layout-{format}"));
        run(Command::new("skopeo").arg("copy").arg(&reference).arg(format!("oci:{}:x", layout.display())));
        let b = t.path().join(format!("bundle-{format}"));
        run(Command::new("umoci").arg("unpack").arg("--image").arg(format!("{}:x", layout.display())).arg(&b));
        assert_eq!(tree_listing(&b.join("rootfs")), want, "rbuild save --format {format} read back by skopeo+umoci");
        // And rbuild loads its own archive with the same image ID.
        let root3 = t.path().join(format!("store-save-{format}"));
        rbuild_ok(&root3, &["load", "-i", archive.to_str().unwrap()]);
        let a = ImageStore::open(&root).unwrap().resolve("multi:1").unwrap().id;
        let b = ImageStore::open(&root3).unwrap().resolve("multi:1").unwrap().id;
        assert_eq!(a, b);
    }
    let _ = Sha256Digest::of(b"");
}

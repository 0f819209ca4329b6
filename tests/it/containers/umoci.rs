//! A committed container, read back by a real OCI client: the scripted changes of issue 6
//! (new, modified and deleted files, a directory deleted and re-created, chmod/chown only,
//! hard links, symlinks) are committed with `rbuild commit`, and `umoci unpack` of the image
//! must give exactly the tree rbuild's own flatten gives, which must hold the changes.
//!
//! Needs root, /bin/busybox and umoci (Debian packages busybox-static, umoci); skips with a
//! message otherwise, fails under CI=true.

use std::path::Path;

use crate::fixture::{busybox_tree, have_tool, is_root, rbuild_ok, require, tar_of, tree_listing};

const CHANGES: &str = "set -e
echo new > /new-file
echo changed >> /etc/motd
rm /etc/group
rm -r /home && mkdir -p /home/again && echo back > /home/again/file
chmod 0700 /etc/passwd
chown 65534:65534 /tmp
echo linked > /data && ln /data /data-hardlink
ln -s /etc/passwd /passwd-link
mkdir -p /opaque/a && echo x > /opaque/a/f";

#[test]
fn umoci_unpack_of_a_committed_container_agrees() {
    if !require(is_root(), "root (overlay mounts, namespaces)")
        || !require(have_tool("umoci"), "umoci (Debian package umoci)")
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    if !busybox_tree(&tree) {
        return;
    }
    std::fs::write(tree.join("etc/motd"), "base\n").expect("write");
    std::fs::create_dir_all(tree.join("home/user")).expect("mkdir");
    std::fs::write(tree.join("home/user/.profile"), "old\n").expect("write");
    let tarball = tmp.path().join("rootfs.tar");
    tar_of(&tree, &tarball);
    let root = tmp.path().join("store");
    rbuild_ok(&root, &["import", tarball.to_str().expect("utf8"), "base:1"]);
    rbuild_ok(&root, &["run", "--name", "changer", "base:1", "sh", "-c", CHANGES]);
    rbuild_ok(&root, &["commit", "-m", "scripted changes", "changer", "changed:1"]);

    // rbuild's own view of the image.
    let store = rbuild::store::ImageStore::open(&root).expect("store");
    let image = store.resolve("changed:1").expect("committed image");
    let flat = tmp.path().join("flat");
    std::fs::create_dir_all(&flat).expect("mkdir");
    store.flatten_into(&image, &flat).expect("flatten");
    let read = |p: &str| std::fs::read_to_string(flat.join(p)).unwrap_or_default();
    assert_eq!(read("new-file"), "new\n");
    assert_eq!(read("etc/motd"), "base\nchanged\n");
    assert!(!flat.join("etc/group").exists(), "deleted file is gone");
    assert!(!flat.join("home/user").exists(), "the deleted directory's old content is gone");
    assert_eq!(read("home/again/file"), "back\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(flat.join("etc/passwd")).expect("passwd").mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(flat.join("tmp")).expect("tmp").uid(), 65534);
    assert_eq!(
        std::fs::metadata(flat.join("data")).expect("data").ino(),
        std::fs::metadata(flat.join("data-hardlink")).expect("link").ino()
    );
    assert_eq!(std::fs::read_link(flat.join("passwd-link")).expect("symlink"), Path::new("/etc/passwd"));

    // umoci reads the store as an OCI layout and must unpack the same tree.
    let bundle = tmp.path().join("bundle");
    let out = std::process::Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:changed:1", root.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tree_listing(&bundle.join("rootfs")), tree_listing(&flat));
}

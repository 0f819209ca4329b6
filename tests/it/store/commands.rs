//! The image commands run as the real binary against a temp store: import, images, tag,
//! history, inspect, rmi and image prune (counting the blobs and layer dirs they free).
//! Needs /bin/busybox (Debian package busybox-static); skips without it, fails under CI=true.

use crate::fixture::{busybox_tree, rbuild, rbuild_ok, tar_of};
use std::path::Path;

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A store with the busybox rootfs imported as `busybox:latest`; returns (tempdir, root, tarball).
fn setup() -> Option<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    if !busybox_tree(&tree) {
        return None;
    }
    let tarball = t.path().join("rootfs.tar");
    tar_of(&tree, &tarball);
    let root = t.path().join("store");
    let id = rbuild_ok(
        &root,
        &[
            "import",
            tarball.to_str().unwrap(),
            "busybox",
            "-c",
            r#"CMD ["sh"]"#,
            "-c",
            "ENV A=1 B=2",
            "-c",
            "LABEL team=store",
        ],
    );
    assert!(id.trim().starts_with("sha256:") && id.trim().len() == 71, "{id}");
    Some((t, root, tarball))
}

#[test]
fn import_then_images_tag_history_inspect() {
    let Some((_t, root, _tarball)) = setup() else {
        return;
    };
    let out = rbuild_ok(&root, &["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"), "{out}");
    assert!(lines[0].trim_end().ends_with("SIZE"), "{out}");
    assert!(lines[1].starts_with("busybox      latest    "), "{out}");
    let id = rbuild_ok(&root, &["images", "-q"]).trim().to_owned();
    assert_eq!(id.len(), 12);

    rbuild_ok(&root, &["tag", "busybox", "localhost:5000/a/b:t"]);
    rbuild_ok(&root, &["tag", &id, "user/app:2"]);
    let out = rbuild_ok(&root, &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(
        got,
        vec![format!("busybox:latest {id}"), format!("localhost:5000/a/b:t {id}"), format!("user/app:2 {id}")]
    );
    assert_eq!(rbuild_ok(&root, &["images", "busybox"]).lines().count(), 2);
    assert_eq!(rbuild_ok(&root, &["images", "-f", "reference=user/*"]).lines().count(), 2);
    assert_eq!(rbuild_ok(&root, &["images", "-f", "label=team=store", "-q"]).trim(), id);
    assert_eq!(rbuild_ok(&root, &["images", "-f", "label=team=other", "-q"]).trim(), "");
    assert_eq!(rbuild_ok(&root, &["images", "-f", "dangling=true", "-q"]).trim(), "");
    let full = rbuild_ok(&root, &["images", "-q", "--no-trunc"]);
    assert!(full.trim().starts_with(&format!("sha256:{id}")));
    let table = rbuild_ok(&root, &["images", "--format", "table {{.Repository}}\\t{{.Tag}}", "busybox"]);
    assert_eq!(table, "REPOSITORY   TAG\nbusybox      latest\n");

    let hist = rbuild_ok(&root, &["history", "busybox"]);
    let h: Vec<&str> = hist.lines().collect();
    assert!(h[0].starts_with("IMAGE          CREATED"), "{hist}");
    assert!(h[0].contains("CREATED BY") && h[0].trim_end().ends_with("COMMENT"));
    // As docker's: a file is sent as the request body, so its path is not in the image.
    assert!(h[1].starts_with(&id) && h[1].contains("Imported from -"), "{hist}");

    assert_eq!(rbuild_ok(&root, &["history", "-q", "busybox"]).trim(), id);

    let v: serde_json::Value = serde_json::from_str(&rbuild_ok(&root, &["inspect", "busybox"])).unwrap();
    let img = &v[0];
    assert_eq!(img["Id"].as_str().unwrap(), full.trim());
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert!(img["RepoTags"].as_array().unwrap().contains(&serde_json::json!("localhost:5000/a/b:t")));
    assert_eq!(rbuild_ok(&root, &["inspect", "--format", "{{.Config.Env}}", "busybox"]).trim(), "[A=1 B=2]");
    assert_eq!(rbuild_ok(&root, &["inspect", "--format", "{{.Id}}", &id]).trim(), full.trim());
    let cfg: serde_json::Value =
        serde_json::from_str(&rbuild_ok(&root, &["inspect", "--format", "{{json .Config}}", "busybox"])).unwrap();
    assert_eq!(cfg["Env"], serde_json::json!(["A=1", "B=2"]));
    let layers = rbuild_ok(&root, &["inspect", "--format", "{{range .RootFS.Layers}}{{.}} {{end}}", "busybox"]);
    assert_eq!(layers.trim(), img["RootFS"]["Layers"][0].as_str().unwrap());

    let missing = rbuild(&root, &["inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("No such image: nope"));
}

#[test]
fn rmi_untags_then_deletes_and_frees_exactly_its_blobs() {
    let Some((t, root, _)) = setup() else { return };
    let id = rbuild_ok(&root, &["images", "-q"]).trim().to_owned();
    // A second image sharing the layer but with another config.
    let tarball = t.path().join("rootfs.tar");
    rbuild_ok(&root, &["import", tarball.to_str().unwrap(), "other:1", "-m", "second"]);
    let blobs = root.join("blobs/sha256");
    assert_eq!(count(&blobs), 5, "one shared layer + 2 configs + 2 manifests");
    rbuild_ok(&root, &["tag", "busybox", "copy:1"]);

    // Several tags, named by ID: refused without -f.
    let r = rbuild(&root, &["rmi", &id]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("referenced in multiple repositories"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    assert_eq!(rbuild_ok(&root, &["rmi", "copy:1"]), "Untagged: copy:1\n");
    assert_eq!(count(&blobs), 5);

    // Unpack the layers, as a build would, so rmi has a layer dir to free.
    let store = rbuild::store::ImageStore::open(&root).unwrap();
    let image = store.resolve("busybox").unwrap();
    store.ensure_unpacked(&image).unwrap();
    assert_eq!(count(&root.join("layers")), 1);

    // A container using the image blocks rmi.
    store.add_container("c1", &image.id).unwrap();
    let r = rbuild(&root, &["rmi", "busybox"]);
    assert_eq!(r.status.code(), Some(1), "{}", String::from_utf8_lossy(&r.stdout));
    store.remove_container("c1").unwrap();

    let out = rbuild_ok(&root, &["rmi", "busybox"]);
    assert_eq!(out, format!("Untagged: busybox:latest\nDeleted: {}\n", image.id));
    assert_eq!(count(&blobs), 3, "config and manifest freed, shared layer kept");
    assert_eq!(count(&root.join("layers")), 1, "layer still used by other:1");

    let other = store.resolve("other:1").unwrap();
    let out = rbuild_ok(&root, &["rmi", "other:1"]);
    assert_eq!(out, format!("Untagged: other:1\nDeleted: {}\nDeleted: {}\n", other.id, other.layers[0].chain_id));
    assert_eq!(count(&blobs), 0);
    assert_eq!(count(&root.join("layers")), 0);
    assert_eq!(rbuild_ok(&root, &["images", "-q"]), "");
    rbuild_ok(&root, &["store", "check"]);
}

#[test]
fn retag_leaves_a_dangling_image_that_prune_removes() {
    let Some((t, root, tarball)) = setup() else {
        return;
    };
    let first = rbuild_ok(&root, &["images", "-q"]).trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    rbuild_ok(&root, &["import", tarball.to_str().unwrap(), "busybox", "-m", "newer"]);
    let out = rbuild_ok(&root, &["images"]);
    assert!(out.lines().any(|l| l.starts_with("<none>       <none>    ") && l.contains(&first)), "{out}");
    assert_eq!(rbuild_ok(&root, &["images", "-f", "dangling=true", "-q"]).trim(), first);
    assert_eq!(count(&root.join("blobs/sha256")), 5);
    // Without -f and no "y" on stdin, nothing happens.
    let _ = rbuild(&root, &["image", "prune"]);
    assert_eq!(count(&root.join("blobs/sha256")), 5);
    let out = rbuild_ok(&root, &["image", "prune", "-f"]);
    assert!(out.starts_with(&format!("Deleted Images:\ndeleted: sha256:{first}")), "{out}");
    assert!(out.trim_end().lines().last().unwrap().starts_with("Total reclaimed space: "), "{out}");
    assert_eq!(count(&root.join("blobs/sha256")), 3, "the shared layer stays");
    let out = rbuild_ok(&root, &["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: busybox:latest"), "{out}");
    assert_eq!(count(&root.join("blobs/sha256")), 0);
    drop(t);
}

#[test]
fn gc_removes_only_unreferenced_data() {
    let Some((_t, root, _)) = setup() else { return };
    let blobs = root.join("blobs/sha256");
    std::fs::write(blobs.join(rbuild::layer::digest::Sha256Digest::of(b"stray").hex()), b"stray").unwrap();
    std::fs::create_dir(root.join("layers").join("a".repeat(64))).unwrap();
    std::fs::create_dir(root.join("tmp/work-dead")).unwrap();
    let live = rbuild_ok(&root, &["inspect", "--format", "{{.Id}}", "busybox"]);
    let stale = root.join("cache").join(format!("{}.json", "b".repeat(64)));
    let kept = root.join("cache").join(format!("{}.json", "c".repeat(64)));
    std::fs::write(&stale, format!(r#"{{"image":"sha256:{}"}}"#, "d".repeat(64))).unwrap();
    std::fs::write(&kept, format!(r#"{{"image":"{}"}}"#, live.trim())).unwrap();
    let check = rbuild_ok(&root, &["store", "check"]);
    assert!(check.contains("garbage: stale cache record"), "{check}");
    assert!(check.contains("garbage: unreferenced blob"), "{check}");
    let out = rbuild_ok(&root, &["store", "gc"]);
    assert!(out.contains("deleted blob: sha256:") && out.contains("deleted layer:"), "{out}");
    assert_eq!(count(&blobs), 3);
    assert_eq!(count(&root.join("layers")), 0);
    assert_eq!(count(&root.join("tmp")), 0);
    assert!(!stale.exists() && kept.exists());
    rbuild_ok(&root, &["inspect", "busybox"]);
    // A cache record keeps its image from a dangling prune; a corrupt one is a problem that
    // --repair removes.
    std::fs::write(&stale, "{not json").unwrap();
    assert_eq!(rbuild(&root, &["store", "check"]).status.code(), Some(1));
    rbuild_ok(&root, &["store", "check", "--repair"]);
    assert!(!stale.exists());
}

#[test]
fn check_finds_and_repairs_a_corrupt_blob() {
    let Some((_t, root, _)) = setup() else { return };
    let store = rbuild::store::ImageStore::open(&root).unwrap();
    let image = store.resolve("busybox").unwrap();
    let layer = store.blob_path(&image.layers[0].digest);
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[600] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let r = rbuild(&root, &["store", "check"]);
    assert_eq!(r.status.code(), Some(1));
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains(&format!("blob {} is corrupt", image.layers[0].digest)), "{out}");
    assert!(out.contains("image busybox:latest"), "{out}");
    rbuild_ok(&root, &["store", "check", "--repair"]);
    rbuild_ok(&root, &["store", "check"]);
    assert_eq!(rbuild_ok(&root, &["images", "-q"]), "");
}

#[test]
fn user_errors_exit_1() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    for args in [
        &["tag", "nope", "x"][..],
        &["rmi", "nope"],
        &["history", "nope"],
        &["import", "/does/not/exist"],
        &["load", "-i", "/does/not/exist"],
    ] {
        let r = rbuild(&root, args);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&r.stderr).starts_with("Error"), "{args:?}");
    }
    let r = rbuild(&root, &["import", "/does/not/exist"]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("/does/not/exist"));
}

#[test]
fn concurrent_imports_tags_and_gc_are_safe() {
    let Some((_t, root, tarball)) = setup() else {
        return;
    };
    let mut children = Vec::new();
    for i in 0..6 {
        let name = format!("par{i}:1");
        children.push(
            crate::fixture::rbuild_command()
                .env("RBUILD_ROOT", &root)
                .args(["import", tarball.to_str().unwrap(), &name, "-m", &name])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // Collections running at the same time must not take the writers' fresh blobs.
        rbuild_ok(&root, &["store", "gc"]);
        rbuild_ok(&root, &["tag", "busybox", &format!("alias{i}")]);
    }
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let root = root.clone();
            let tarball = tarball.clone();
            std::thread::spawn(move || {
                let name = format!("thr{i}:1");
                let out = crate::fixture::rbuild_command()
                    .env("RBUILD_ROOT", &root)
                    .args(["import", tarball.to_str().unwrap(), &name, "-m", &name])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let gc =
                    crate::fixture::rbuild_command().env("RBUILD_ROOT", &root).args(["store", "gc"]).output().unwrap();
                assert!(gc.status.success());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let names = rbuild_ok(&root, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for i in 0..6 {
        assert!(names.contains(&format!("par{i}:1")), "{names}");
        assert!(names.contains(&format!("alias{i}:latest")), "{names}");
    }
    for i in 0..4 {
        assert!(names.contains(&format!("thr{i}:1")), "{names}");
        rbuild_ok(&root, &["history", &format!("thr{i}:1")]);
    }
    let check = rbuild_ok(&root, &["store", "check"]);
    assert!(check.contains("consistent"), "{check}");
}

/// The README's first lines, on two "machines" (stores) a second apart: with
/// `SOURCE_DATE_EPOCH` set, `testdata/busybox-rootfs.sh | rbuild import - busybox` gives one
/// image ID (its `created` is the epoch, not the import time), and so does the example built
/// on it. A bad value is refused; without it the import is stamped now.
#[test]
fn import_with_source_date_epoch_gives_one_image_id_everywhere() {
    if !crate::fixture::require(crate::fixture::busybox_path().is_some(), "busybox-static") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let import = |store: &str, epoch: Option<&str>| {
        let script =
            format!("{}/testdata/busybox-rootfs.sh | {} import - busybox", repo.display(), crate::fixture::RBUILD);
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-o", "pipefail", "-c", &script]).env("RBUILD_ROOT", t.path().join(store)).env_remove("CI");
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        cmd.output().unwrap()
    };
    let first = import("a", Some("0"));
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = import("b", Some("0"));
    let id = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), id, "two imports of one tarball differ");
    // From a file, as from stdin: docker's client sends the file as the body, and neither
    // history says where the bytes came from.
    let tarball = t.path().join("busybox.tar");
    let made = std::process::Command::new("bash")
        .args(["-c", &format!("{}/testdata/busybox-rootfs.sh > {}", repo.display(), tarball.display())])
        .status()
        .expect("bash");
    assert!(made.success());
    let from_file = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", t.path().join("e"))
        .env("SOURCE_DATE_EPOCH", "0")
        .args(["import", &tarball.to_string_lossy(), "busybox"])
        .output()
        .expect("import");
    assert_eq!(String::from_utf8_lossy(&from_file.stdout).trim(), id, "a file and stdin give one image");
    let created = rbuild_ok(&t.path().join("a"), &["inspect", "-f", "{{.Created}}", "busybox"]);
    assert!(created.trim().starts_with("1970-01-01T00:00:00"), "{created}");
    let later = import("c", None);
    assert_ne!(String::from_utf8_lossy(&later.stdout).trim(), id, "without SOURCE_DATE_EPOCH the import is now");
    let bad = import("d", Some("yesterday"));
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("SOURCE_DATE_EPOCH=\"yesterday\" is not a whole number of seconds"), "{err}");
    assert_eq!(count(&t.path().join("d/blobs/sha256")), 0, "a refused import wrote blobs");
    if !crate::fixture::require(crate::fixture::is_root(), "root (the example's RUN step)") {
        return;
    }
    let example = repo.join("testdata/example");
    let build = |store: &str| {
        let out = crate::fixture::rbuild_command()
            .env("RBUILD_ROOT", t.path().join(store))
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("CI")
            .args(["build", "-q", "-t", "example"])
            .arg(&example)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(build("a"), build("b"), "the example built on the two imports differs");
}

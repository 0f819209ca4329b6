//! The store keeps itself safe and whole: its dirs are private to the owner (a setuid file in
//! an unpacked layer is out of reach of other users), leases keep what running builds use
//! through `rmi -f`, `image prune -a -f` and `store gc`, a corrupt blob damages one image and
//! not the store, and what `kill -9` leaves in `tmp/` is reclaimed by the next command.
//! The build and run cases need root (containers); they skip without it and fail under CI=true.

use crate::fixture::{busybox_tree, is_root, raw_tar, rbuild, rbuild_ok, require, tar_of, Fixture, Raw};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// The `tmp/` entries whose names start with `prefix`.
fn tmp_entries(root: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(root.join("tmp"))
        .expect("tmp")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect()
}

fn spawn_build(root: &Path, context: &Path, tag: &str) -> Child {
    crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", root)
        .env_remove("CI")
        .args(["build", "--progress", "plain", "-t", tag])
        .arg(context)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild build")
}

#[test]
fn store_dirs_are_private_and_a_setuid_file_in_a_layer_is_out_of_reach() {
    if !require(is_root(), "root (run unpacks layers in a container; the test switches to nobody)") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    // The temp dir itself is 0700: open it up, so only the store's own modes protect it.
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let tree = t.path().join("rootfs");
    if !busybox_tree(&tree) {
        return;
    }
    let suid = tree.join("bin/suid-busybox");
    std::fs::copy(tree.join("bin/busybox"), &suid).expect("copy");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    let tar = t.path().join("suid.tar");
    tar_of(&tree, &tar);
    let root = t.path().join("store");
    rbuild_ok(&root, &["import", tar.to_str().expect("utf-8"), "suid"]);
    rbuild_ok(&root, &["run", "--rm", "suid", "true"]);

    let layer = std::fs::read_dir(root.join("layers")).expect("layers").next().expect("an unpacked layer").expect("e");
    let unpacked = layer.path().join("bin/suid-busybox");
    assert_eq!(mode(&unpacked), 0o4755, "the layer keeps its setuid file");
    for dir in [root.clone(), root.join("layers"), root.join("tmp"), root.join("containers"), root.join("run")] {
        assert_eq!(mode(&dir), 0o700, "{} must be owner-only", dir.display());
    }
    // As nobody, the setuid file (which would make them root) cannot even be reached.
    let as_nobody = Command::new(&unpacked).args(["id", "-u"]).uid(65534).gid(65534).output();
    match as_nobody {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        Ok(out) => panic!("nobody ran the setuid file: {out:?}"),
    }

    // A store made world-readable (by an older rbuild, or by hand) is fixed by the next command.
    for dir in [root.clone(), root.join("layers"), root.join("tmp")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    rbuild_ok(&root, &["images"]);
    for dir in [root.clone(), root.join("layers"), root.join("tmp")] {
        assert_eq!(mode(&dir), 0o700, "{} was not fixed on open", dir.display());
    }
    let again = Command::new(&unpacked).args(["id", "-u"]).uid(65534).gid(65534).output();
    assert!(again.is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied));
}

#[test]
fn builds_survive_rmi_prune_and_gc_running_beside_them() {
    let Some(f) = Fixture::new() else { return };
    let contexts: Vec<PathBuf> = (0..3)
        .map(|i| {
            let text = format!(
                "FROM busybox\nRUN echo {i} > /n && sleep 2\nRUN cat /bin/busybox > /copy && sleep 1\nRUN cat /n /copy > /dev/null\n"
            );
            f.context(&format!("ctx{i}"), &text, &[])
        })
        .collect();
    let mut builds: Vec<Child> =
        contexts.iter().enumerate().map(|(i, c)| spawn_build(&f.root, c, &format!("app{i}:1"))).collect();
    // Each build holds a lease once it has resolved its base image.
    for _ in 0..600 {
        if tmp_entries(&f.root, "lease-").len() >= 3 || builds.iter_mut().any(|b| b.try_wait().ok().flatten().is_some())
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(tmp_entries(&f.root, "lease-").len() >= 3, "the builds did not take their leases");

    let mut rounds = 0;
    let mut notes = String::new();
    while rounds < 200 && builds.iter_mut().any(|b| b.try_wait().expect("wait").is_none()) {
        rounds += 1;
        let rmi = rbuild(&f.root, &["rmi", "-f", "busybox"]);
        notes.push_str(&String::from_utf8_lossy(&rmi.stderr));
        let ids = rbuild_ok(&f.root, &["images", "-a", "-q"]);
        for id in ids.lines() {
            // Leased images refuse (or are only untagged); the rest go.
            let _ = rbuild(&f.root, &["rmi", "-f", id]);
        }
        let prune = rbuild(&f.root, &["image", "prune", "-a", "-f"]);
        assert!(prune.status.success(), "prune: {}", String::from_utf8_lossy(&prune.stderr));
        notes.push_str(&String::from_utf8_lossy(&prune.stderr));
        let gc = rbuild(&f.root, &["store", "gc"]);
        assert!(gc.status.success(), "gc: {}", String::from_utf8_lossy(&gc.stderr));
        notes.push_str(&String::from_utf8_lossy(&gc.stderr));
    }
    for (i, b) in builds.into_iter().enumerate() {
        let out = b.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "build {i} failed while rmi/prune/gc ran ({rounds} rounds):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("{rounds} rounds of rmi/prune/gc while 3 builds ran; they said:\n{notes}");
    assert!(rounds > 0, "the builds ended before any removal ran");
    assert!(notes.contains("in use by build (pid"), "removals never said what they kept: {notes}");
    let check = rbuild(&f.root, &["store", "check"]);
    assert!(check.status.success(), "store check: {}", String::from_utf8_lossy(&check.stdout));
    // The leases ended with the builds: what they kept can go now.
    rbuild_ok(&f.root, &["image", "prune", "-a", "-f"]);
    assert_eq!(rbuild_ok(&f.root, &["images", "-a", "-q"]), "");
    assert!(tmp_entries(&f.root, "lease-").is_empty());
}

/// A store with two images (`good:1`, `bad:1`) made from small tars, no root needed.
fn store_with_two_images(t: &Path) -> PathBuf {
    let root = t.join("store");
    for (name, content) in [("good:1", &b"good"[..]), ("bad:1", &b"bad"[..])] {
        let tar = t.join(format!("{name}.tar"));
        std::fs::write(&tar, raw_tar(&[Raw::Dir("etc/"), Raw::File("etc/name", content)])).expect("write");
        rbuild_ok(&root, &["import", tar.to_str().expect("utf-8"), name]);
    }
    root
}

fn image_id(root: &Path, name: &str) -> String {
    rbuild_ok(root, &["inspect", "--format", "{{.Id}}", name]).trim().to_owned()
}

#[test]
fn a_corrupt_config_damages_one_image_and_repair_restores_the_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = store_with_two_images(t.path());
    let bad_id = image_id(&root, "bad:1");
    let config = root.join("blobs/sha256").join(bad_id.trim_start_matches("sha256:"));
    std::fs::write(&config, b"{\"not\": \"the config\"}").expect("corrupt the config");

    // `images` lists the good image and names the broken one, with its digest and the fix.
    let images = rbuild(&root, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&images.stdout), String::from_utf8_lossy(&images.stderr));
    assert!(images.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "good:1");
    assert!(stderr.contains("bad:1") && stderr.contains(&bad_id), "{stderr}");
    assert!(stderr.contains("store check --repair"), "{stderr}");
    // The others keep working; the damaged one is named, not "No such image".
    rbuild_ok(&root, &["inspect", "good:1"]);
    let inspect = rbuild(&root, &["inspect", "bad:1"]);
    assert!(!inspect.status.success());
    assert!(String::from_utf8_lossy(&inspect.stderr).contains("is damaged"), "{inspect:?}");
    let gc = rbuild(&root, &["store", "gc"]);
    assert!(gc.status.success(), "{gc:?}");
    assert!(String::from_utf8_lossy(&gc.stderr).contains("bad:1"), "gc did not say what it kept: {gc:?}");
    let prune = rbuild(&root, &["image", "prune", "-f"]);
    assert!(prune.status.success(), "{prune:?}");

    // A build from it reports the damage instead of asking a registry.
    let ctx = t.path().join("ctx");
    std::fs::create_dir(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), "FROM bad:1\nENV A=1\n").expect("write");
    let build = rbuild(&root, &["build", "-t", "x", ctx.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success());
    assert!(err.contains("is damaged") && !err.contains("pull access denied"), "{err}");

    let check = rbuild(&root, &["store", "check"]);
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("bad:1"), "{check:?}");
    let repair = rbuild_ok(&root, &["store", "check", "--repair"]);
    assert!(repair.contains("removed image bad:1"), "{repair}");
    rbuild_ok(&root, &["store", "check"]);
    let images = rbuild(&root, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(String::from_utf8_lossy(&images.stdout).trim(), "good:1");
    assert!(images.stderr.is_empty(), "{images:?}");
    rbuild_ok(&root, &["rmi", "good:1"]);
}

#[test]
fn a_killed_build_leaves_nothing_pinned_and_its_tmp_is_reclaimed() {
    let Some(f) = Fixture::new() else { return };
    let ctx = f.context("slow", "FROM busybox\nRUN head -c 1000000 /dev/zero > /big && sleep 60\n", &[]);
    let mut build = spawn_build(&f.root, &ctx, "slow:1");
    for _ in 0..600 {
        if !tmp_entries(&f.root, "work-").is_empty() && !tmp_entries(&f.root, "lease-").is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!tmp_entries(&f.root, "lease-").is_empty(), "the build took no lease");
    // Let the RUN write into its upper dir, then kill -9.
    std::thread::sleep(std::time::Duration::from_millis(500));
    build.kill().expect("kill -9");
    build.wait().expect("wait");

    // The next command, whatever it is, reclaims the dead work dirs and the dead lease.
    rbuild_ok(&f.root, &["images"]);
    assert_eq!(tmp_entries(&f.root, "work-"), Vec::<PathBuf>::new());
    assert_eq!(tmp_entries(&f.root, "lease-"), Vec::<PathBuf>::new());
    let check = rbuild(&f.root, &["store", "check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    // Nothing pins busybox any more: rmi deletes it.
    let rmi = rbuild_ok(&f.root, &["rmi", "busybox"]);
    assert!(rmi.contains("Deleted: sha256:"), "{rmi}");
}

#[test]
fn an_archive_whose_layer_is_not_a_whole_tar_is_refused_at_load() {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("store");
    // A layer cut in the middle of a file's data; the config's diff ID is that of the cut
    // bytes, so every digest matches and only reading the tar finds the damage.
    let whole = raw_tar(&[Raw::Dir("etc/"), Raw::File("etc/data", &[7u8; 8192])]);
    let layer = whole[..512 * 2 + 3000].to_vec();
    let diff_id = rbuild::layer::digest::Sha256Digest::of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] }, "history": [],
    }))
    .expect("json");
    let manifest = serde_json::to_vec(
        &serde_json::json!([{ "Config": "config.json", "RepoTags": ["cut:1"], "Layers": ["layer.tar"] }]),
    )
    .expect("json");
    let mut archive = tar::Builder::new(Vec::new());
    for (name, data) in [("config.json", &config), ("layer.tar", &layer), ("manifest.json", &manifest)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append_data(&mut h, name, data.as_slice()).expect("append");
    }
    let file = t.path().join("cut.tar");
    std::fs::write(&file, archive.into_inner().expect("tar")).expect("write");

    let out = rbuild(&root, &["load", "-i", file.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(file.to_str().expect("utf-8")) && err.contains("etc/data"), "{err}");
    assert_eq!(rbuild_ok(&root, &["images", "-q"]), "");
    rbuild_ok(&root, &["store", "check"]);
}

#[test]
fn a_running_container_keeps_its_image_through_rmi_f_prune_and_gc() {
    let Some(f) = Fixture::new() else { return };
    let id = rbuild_ok(&f.root, &["run", "-d", "busybox", "sleep", "100"]).trim().to_owned();
    let layers = || std::fs::read_dir(f.root.join("layers")).expect("layers").count();
    let unpacked = layers();
    assert!(unpacked > 0, "run unpacked the image");

    let rmi = rbuild(&f.root, &["rmi", "-f", "busybox"]);
    assert!(rmi.status.success(), "{rmi:?}");
    assert!(String::from_utf8_lossy(&rmi.stderr).contains("in use by container (pid"), "{rmi:?}");
    let prune = rbuild(&f.root, &["image", "prune", "-a", "-f"]);
    assert!(prune.status.success(), "{prune:?}");
    rbuild_ok(&f.root, &["store", "gc"]);
    assert_eq!(layers(), unpacked, "the running container's lower dirs were deleted");

    rbuild_ok(&f.root, &["rm", "-f", &id]);
    // Its monitor is gone, and so is its lease: the image can go now.
    rbuild_ok(&f.root, &["image", "prune", "-a", "-f"]);
    assert_eq!(rbuild_ok(&f.root, &["images", "-a", "-q"]), "");
    rbuild_ok(&f.root, &["store", "gc"]);
    assert_eq!(layers(), 0);
}

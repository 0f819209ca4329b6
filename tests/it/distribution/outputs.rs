//! A build's outputs for the next CI step: `--push` (then `skopeo inspect` sees it),
//! `--output type=oci` (read by skopeo's `oci-archive:` and by umoci), `type=docker` (loaded
//! by `docker load`), `type=tar` and `type=local` (the flattened root filesystem), without the
//! store's tags changing; `--iidfile` and `--metadata-file` as buildx writes them.

use crate::fixture::{have_tool, rbuild, rbuild_ok, require, Fixture};
use crate::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example")
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_push_is_seen_by_skopeo_and_the_metadata_file_names_it() {
    if !crate::registry::ready() {
        return;
    }
    let Some(f) = Fixture::new() else { return };
    let reg = Registry::start(false);
    let name = format!("{}/ci/example:1", reg.host());
    let meta = f.dir.path().join("meta.json");
    let iid = f.dir.path().join("iid");
    let ctx = example();
    let out = rbuild_ok(
        &f.root,
        &[
            "build",
            "-t",
            &name,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--iidfile",
            iid.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    assert!(out.contains(&format!("The push refers to repository [{}/ci/example]", reg.host())), "{out}");
    assert!(out.contains("1: digest: sha256:"), "{out}");
    let meta = read_json(&meta);
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(meta["containerimage.config.digest"], serde_json::json!(id));
    assert_eq!(meta["image.name"], serde_json::json!(name));
    let inspect: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo").args(["inspect", "--tls-verify=false"]).arg(format!("docker://{name}")),
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], meta["containerimage.digest"], "skopeo sees another manifest");
    let config: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw"]).arg(format!("docker://{name}")),
    ))
    .unwrap();
    assert_eq!(config["config"]["digest"], serde_json::json!(id), "the pushed config is not the image ID");
    // --push keeps the tag in the store, as `docker build --push` does.
    assert!(rbuild_ok(&f.root, &["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains(&name));
}

#[test]
fn build_outputs_are_read_by_skopeo_umoci_and_docker_without_tagging_the_store() {
    if !require(have_tool("skopeo"), "skopeo") || !require(have_tool("umoci"), "umoci") {
        return;
    }
    let Some(f) = Fixture::new() else { return };
    let d = f.dir.path();
    let tag = format!("rbuild-output-test-{}:1", std::process::id());
    let (oci, docker, tar, local) =
        (d.join("app-oci.tar"), d.join("app-docker.tar"), d.join("rootfs.tar"), d.join("rootfs"));
    let ctx = example();
    let specs = [
        format!("type=oci,dest={}", oci.display()),
        format!("type=docker,dest={}", docker.display()),
        format!("type=tar,dest={}", tar.display()),
    ];
    let meta = d.join("meta.json");
    let id = rbuild_ok(
        &f.root,
        &[
            "build",
            "-q",
            "-t",
            &tag,
            "-o",
            &specs[0],
            "--output",
            &specs[1],
            "-o",
            &specs[2],
            "-o",
            local.to_str().unwrap(),
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ],
    );
    let id = id.trim();
    let meta = read_json(&meta);
    assert_eq!(meta["containerimage.config.digest"], serde_json::json!(id));
    let tags = rbuild_ok(&f.root, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!tags.contains("rbuild-output-test"), "--output tagged the store: {tags}");

    // OCI archive: skopeo reads it by its ref name, umoci unpacks it.
    let inspect: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}:1", oci.display())),
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], meta["containerimage.digest"]);
    let layout = d.join("layout");
    std::fs::create_dir(&layout).unwrap();
    run_ok(Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout));
    let bundle = d.join("bundle");
    run_ok(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:1", layout.display())).arg(&bundle));
    let page = "Hi, I am in your container\n";
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/var/www/html/index.html")).unwrap(), page);

    // The flattened root filesystem, as a tar and as a directory.
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&tar));
    assert!(listing.lines().any(|l| l == "var/www/html/index.html"), "{listing}");
    assert!(listing.lines().any(|l| l == "opt/app/start.sh"), "{listing}");
    assert_eq!(std::fs::read_to_string(local.join("var/www/html/index.html")).unwrap(), page);
    assert!(local.join("bin/busybox").is_file());

    // docker-archive: `docker load` gives the same image ID.
    if !require(Path::new("/var/run/docker.sock").exists() && have_tool("docker"), "dockerd (docker.io)") {
        return;
    }
    let loaded = run_ok(Command::new("docker").arg("load").arg("-i").arg(&docker));
    assert!(loaded.contains(&format!("Loaded image: {tag}")), "{loaded}");
    let docker_id = run_ok(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", &tag]));
    let _ = Command::new("docker").args(["rmi", &tag]).output();
    assert_eq!(docker_id.trim(), id, "docker loaded another image");
}

#[test]
fn bad_outputs_are_refused_before_building() {
    let t = tempfile::tempdir().unwrap();
    let ctx = example();
    let cases: [(&[&str], &str); 4] = [
        (&["-o", "type=zip,dest=x"], "invalid --output \"type=zip,dest=x\": unknown type \"zip\""),
        (&["-o", "type=oci"], "type=oci needs dest=FILE"),
        (&["--push"], "--push needs a name to push to: give -t NAME[:TAG]"),
        (&["-t", "app", "-o", "type=oci,dest=a,compression=zstd"], "unknown key \"compression\""),
    ];
    for (flags, message) in cases {
        let mut args = vec!["build"];
        args.extend_from_slice(flags);
        args.push(ctx.to_str().unwrap());
        let out = rbuild(&t.path().join("store"), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} started building: {}", String::from_utf8_lossy(&out.stdout));
    }
}

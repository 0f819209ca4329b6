//! `rbuild push`, `rbuild pull` and pulls during `rbuild build`, against real registries:
//! each test starts its own `docker-registry serve` (Debian package docker-registry) on
//! 127.0.0.1 with a free port and a temp storage dir, killed when the test ends. Checked with
//! skopeo; basic auth uses a bcrypt htpasswd from `htpasswd` (Debian package apache2-utils).
//!
//! Needs root (builds, the busybox image), docker-registry, skopeo, htpasswd and curl; skips
//! with a message without them, and fails under CI=true (`.ci/run` installs them).

use crate::fixture::{have_tool, rbuild_ok, require, store_with_busybox};
use rbuild::store::ImageStore;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `docker-registry serve` on 127.0.0.1:<free port>, killed on drop.
pub(crate) struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry; with `htpasswd`, it requires basic auth as `user`/`pass`.
    pub(crate) fn start(auth: bool) -> Registry {
        Registry::start_with(auth, None)
    }

    /// Starts a registry, with basic auth as `user`/`pass` if `auth`, serving HTTPS with the
    /// (certificate, key) PEM files given in `tls`.
    pub(crate) fn start_with(auth: bool, tls: Option<(&Path, &Path)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((cert, key)) = tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if auth {
            let out = Command::new("htpasswd").args(["-Bbn", "user", "pass"]).output().unwrap();
            assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n", file.display()));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start: {}", reg.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file holding a blob in the registry's storage.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join(format!("storage/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn ready() -> bool {
    require(have_tool("docker-registry"), "docker-registry (Debian package docker-registry)")
        && require(have_tool("skopeo"), "skopeo (Debian package skopeo)")
        && require(have_tool("htpasswd"), "htpasswd (Debian package apache2-utils)")
        && require(have_tool("curl"), "curl (Debian package curl)")
}

/// rbuild with `RBUILD_ROOT=root`, no credentials from the machine, and `envs`.
pub(crate) fn rb(root: &Path, envs: &[(&str, &Path)], args: &[&str]) -> Output {
    let empty = std::env::temp_dir().join("rbuild-test-no-docker-config");
    let mut cmd = crate::fixture::rbuild_command();
    cmd.env("RBUILD_ROOT", root)
        .env("DOCKER_CONFIG", &empty)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("CI");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

pub(crate) fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn manifest_digest(root: &Path, name: &str) -> String {
    ImageStore::open(root).unwrap().resolve(name).unwrap().manifest_digest.to_string()
}

fn image_id(root: &Path, name: &str) -> String {
    ImageStore::open(root).unwrap().resolve(name).unwrap().id.to_string()
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256")).map(|d| d.count()).unwrap_or(0)
}

/// `store check` finds no problem and no garbage.
fn assert_clean(root: &Path) {
    let out = ok(rb(root, &[], &["store", "check"]), "store check");
    assert!(out.contains("is consistent") && !out.contains("garbage"), "{out}");
}

fn skopeo_digest(reference: &str) -> String {
    let out = Command::new("skopeo").args(["inspect", "--tls-verify=false", reference]).output().unwrap();
    assert!(out.status.success(), "skopeo inspect: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

/// Pushes `name` from `root` to `dest` and returns the digest push printed.
fn push(root: &Path, name: &str, dest: &str) -> String {
    let out = ok(rb(root, &[], &["push", name, dest]), "push");
    let last = out.lines().last().unwrap_or_default();
    let digest = last.split("digest: ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_default();
    assert!(digest.starts_with("sha256:"), "{out}");
    digest.to_owned()
}

#[test]
fn push_then_pull_round_trips_the_image() {
    if !ready() {
        return;
    }
    let Some((t, root)) = store_with_busybox() else { return };
    let reg = Registry::start(false);
    let dest = format!("{}/busybox:latest", reg.host());
    let out = ok(rb(&root, &[], &["push", "busybox", &dest]), "push");
    assert!(out.contains(&format!("The push refers to repository [{}/busybox]", reg.host())), "{out}");
    assert!(out.contains(": Pushed"), "{out}");
    let local = manifest_digest(&root, "busybox");
    assert!(out.contains(&format!("latest: digest: {local}")), "{out}");
    assert_eq!(skopeo_digest(&format!("docker://{dest}")), local);
    // A second push uploads nothing.
    let again = ok(rb(&root, &[], &["push", "busybox", &dest]), "push");
    assert!(again.contains("Layer already exists") && !again.contains(": Pushed"), "{again}");

    // skopeo copies it back byte for byte: same manifest digest in an OCI dir, same config.
    let oci = t.path().join("oci");
    let st = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--src-tls-verify=false", &format!("docker://{dest}")])
        .arg(format!("oci:{}:busybox", oci.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let index: Value = serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"].as_str(), Some(local.as_str()));
    let copied = std::fs::read(oci.join("blobs/sha256").join(local.trim_start_matches("sha256:"))).unwrap();
    let ours = std::fs::read(root.join("blobs/sha256").join(local.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(copied, ours);
    let id = image_id(&root, "busybox");
    let config = |dir: &Path| std::fs::read(dir.join("blobs/sha256").join(id.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(config(&oci), config(&root));

    // Pull into a fresh store: same image, same manifest, a consistent store.
    let fresh = t.path().join("fresh");
    let out = ok(rb(&fresh, &[], &["pull", &format!("{}/busybox", reg.host())]), "pull");
    assert!(out.starts_with("Using default tag: latest\n"), "{out}");
    assert!(out.contains("latest: Pulling from busybox") && out.contains(": Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {local}")), "{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {dest}")), "{out}");
    assert!(out.ends_with(&format!("{dest}\n")), "{out}");
    assert_eq!(image_id(&fresh, &dest), image_id(&root, "busybox"));
    assert_eq!(manifest_digest(&fresh, &dest), local);
    assert_clean(&fresh);
    let blobs = blob_count(&fresh);
    let out = ok(rb(&fresh, &[], &["pull", &dest]), "pull again");
    assert!(out.contains(": Already exists") && !out.contains("Pull complete"), "{out}");
    assert!(out.contains("Status: Image is up to date"), "{out}");
    assert_eq!(blob_count(&fresh), blobs);
    let quiet = ok(rb(&fresh, &[], &["pull", "-q", &dest]), "pull -q");
    assert_eq!(quiet, format!("{dest}\n"));
    // Pull by digest.
    let by_digest = format!("{}/busybox@{local}", reg.host());
    ok(rb(&fresh, &[], &["pull", &by_digest]), "pull by digest");
}

#[test]
fn a_manifest_list_resolves_to_the_native_platform() {
    if !ready() {
        return;
    }
    let Some((t, root)) = store_with_busybox() else { return };
    let reg = Registry::start(false);
    let native = push(&root, "busybox", &format!("{}/multi:native", reg.host()));
    // Another image for another architecture.
    let ctx = t.path().join("other");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo other > /other\n").unwrap();
    rbuild_ok(&root, &["build", "-q", "-t", "other", ctx.to_str().unwrap()]);
    let other = push(&root, "other", &format!("{}/multi:other", reg.host()));
    let native_arch = rbuild::frontend::lower::Platform::native().arch;
    let other_arch = if native_arch == "s390x" { "amd64" } else { "s390x" };
    let size = |name: &str| ImageStore::open(&root).unwrap().resolve(name).unwrap().manifest_size;
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other, "size": size("other"),
             "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": native, "size": size("busybox"),
             "platform": {"os": "linux", "architecture": native_arch}},
        ],
    });
    let file = t.path().join("index.json");
    std::fs::write(&file, serde_json::to_vec(&list).unwrap()).unwrap();
    let st = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.index.v1+json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{}/v2/multi/manifests/latest", reg.host()))
        .status()
        .unwrap();
    assert!(st.success(), "PUT of the index failed: {}", reg.log());
    let fresh = t.path().join("fresh");
    let name = format!("{}/multi:latest", reg.host());
    ok(rb(&fresh, &[], &["pull", &name]), "pull of a manifest list");
    assert_eq!(image_id(&fresh, &name), image_id(&root, "busybox"));
    assert_eq!(manifest_digest(&fresh, &name), native);
    assert_clean(&fresh);
}

#[test]
fn a_corrupt_blob_fails_the_pull_and_leaves_the_store_alone() {
    if !ready() {
        return;
    }
    let Some((t, root)) = store_with_busybox() else { return };
    let reg = Registry::start(false);
    let dest = format!("{}/busybox:latest", reg.host());
    push(&root, "busybox", &dest);
    let layer = ImageStore::open(&root).unwrap().resolve("busybox").unwrap().layers[0].digest.to_string();
    // Flip one byte of the layer in the registry's storage: same size, other content.
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let fresh = t.path().join("fresh");
    ImageStore::open(&fresh).unwrap();
    let out = rb(&fresh, &[], &["pull", &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&layer) && err.contains("corrupt"), "{err}");
    assert_eq!(blob_count(&fresh), 0);
    assert_clean(&fresh);
    assert!(ok(rb(&fresh, &[], &["images", "-q"]), "images").trim().is_empty());
}

#[test]
fn basic_auth_uses_docker_config_credentials() {
    if !ready() {
        return;
    }
    let Some((t, root)) = store_with_busybox() else { return };
    let reg = Registry::start(true);
    let dest = format!("{}/busybox:latest", reg.host());
    // Without credentials: unauthorized, for push and pull.
    let out = rb(&root, &[], &["push", "busybox", &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unauthorized") && err.contains(&reg.host()), "{err}");
    let config = t.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    // base64("user:pass")
    let body = format!(r#"{{"auths":{{"{}":{{"auth":"dXNlcjpwYXNz"}}}}}}"#, reg.host());
    std::fs::write(config.join("config.json"), body).unwrap();
    let creds: &[(&str, &Path)] = &[("DOCKER_CONFIG", &config)];
    ok(rb(&root, creds, &["push", "busybox", &dest]), "push with credentials");
    let fresh = t.path().join("fresh");
    let out = rb(&fresh, &[], &["pull", &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unauthorized"), "{err}");
    ok(rb(&fresh, creds, &["pull", &dest]), "pull with credentials");
    assert_eq!(image_id(&fresh, &dest), image_id(&root, "busybox"));
    // Podman's auth file works too; wrong credentials are refused.
    let auth_file = t.path().join("auth.json");
    std::fs::write(&auth_file, format!(r#"{{"auths":{{"{}":{{"auth":"dXNlcjpub3Bl"}}}}}}"#, reg.host())).unwrap();
    let out = rb(&fresh, &[("REGISTRY_AUTH_FILE", &auth_file)], &["pull", &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unauthorized") && err.contains("auth.json"), "{err}");

    // A credential helper named by credsStore, found on PATH, as docker runs it.
    let helper_config = t.path().join("helper-config");
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&helper_config).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(helper_config.join("config.json"), r#"{"auths":{},"credsStore":"rbuildtest"}"#).unwrap();
    let script = bin.join("docker-credential-rbuildtest");
    let answer = format!(r#"{{"ServerURL":"{}","Username":"user","Secret":"pass"}}"#, reg.host());
    let body = format!(
        "#!/bin/sh\nread server\n[ \"$server\" = \"{}\" ] && echo '{answer}' && exit 0\necho 'credentials not found in native keychain'\nexit 1\n",
        reg.host()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = std::path::PathBuf::from(format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    let helper_env: &[(&str, &Path)] = &[("DOCKER_CONFIG", &helper_config), ("PATH", &path)];
    let third = t.path().join("third");
    ok(rb(&third, helper_env, &["pull", &dest]), "pull with a credential helper");
    assert_eq!(image_id(&third, &dest), image_id(&root, "busybox"));
    // A helper that is not installed is an error naming it and the config file.
    let out = rb(&third, &[("DOCKER_CONFIG", &helper_config)], &["pull", &dest]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("docker-credential-rbuildtest") && err.contains("config.json"), "{err}");
}

fn json_events(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn step_key(events: &[Value], step: u64) -> String {
    events
        .iter()
        .find(|e| e["event"] == "step_started" && e["step"] == step)
        .and_then(|e| e["cache_key"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn hits(events: &[Value]) -> Vec<u64> {
    events.iter().filter(|e| e["event"] == "cache_hit").filter_map(|e| e["step"].as_u64()).collect()
}

#[test]
fn build_pulls_a_missing_base_and_pull_flag_refreshes_it() {
    if !ready() {
        return;
    }
    let Some((t, root)) = store_with_busybox() else { return };
    let reg = Registry::start(false);
    let base = format!("{}/busybox:latest", reg.host());
    push(&root, "busybox", &base);
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {}/busybox\nRUN echo built > /built\n", reg.host())).unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let builds = t.path().join("builds");
    let first = json_events(&ok(rb(&builds, &[], &["build", "--progress", "json", ctx_s]), "build"));
    assert_eq!(image_id(&builds, &base), image_id(&root, "busybox"));
    // The pull is shown, as docker build shows it, before the first step.
    let pull_lines: Vec<&str> =
        first.iter().filter(|e| e["event"] == "pull").filter_map(|e| e["message"].as_str()).collect();
    // Docker names the repository without the registry host here.
    assert!(pull_lines.contains(&"latest: Pulling from busybox"), "{pull_lines:?}");
    assert!(pull_lines.iter().any(|l| l.ends_with("Pull complete")), "{pull_lines:?}");
    assert_eq!(pull_lines.last().copied(), Some(format!("Status: Downloaded newer image for {base}").as_str()));
    let first_pull = first.iter().position(|e| e["event"] == "pull").expect("a pull event");
    let first_step = first.iter().position(|e| e["event"] == "step_started").expect("a step");
    assert!(first_pull < first_step, "{first:?}");
    let second = json_events(&ok(rb(&builds, &[], &["build", "--progress", "json", ctx_s]), "rebuild"));
    assert_eq!(hits(&second), vec![2], "{second:?}");
    assert_eq!(step_key(&first, 1), step_key(&second, 1));

    // A changed base in the registry: --pull fetches it and the cache misses from FROM on.
    let changed = t.path().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    std::fs::write(changed.join("Dockerfile"), "FROM busybox\nRUN echo new > /new\n").unwrap();
    rbuild_ok(&root, &["build", "-q", "-t", "newbase", changed.to_str().unwrap()]);
    push(&root, "newbase", &base);
    let unchanged = json_events(&ok(rb(&builds, &[], &["build", "--progress", "json", ctx_s]), "build"));
    assert_eq!(hits(&unchanged), vec![2], "without --pull the local base is used: {unchanged:?}");
    let pulled = json_events(&ok(rb(&builds, &[], &["build", "--pull", "--progress", "json", ctx_s]), "build --pull"));
    assert_eq!(image_id(&builds, &base), image_id(&root, "newbase"));
    assert_ne!(step_key(&pulled, 1), step_key(&first, 1));
    assert!(hits(&pulled).is_empty(), "{pulled:?}");
    assert!(pulled.iter().any(|e| e["event"] == "cache_miss" && e["step"] == 2), "{pulled:?}");
    // Up to date now: --pull keeps the cache.
    let again = json_events(&ok(rb(&builds, &[], &["build", "--pull", "--progress", "json", ctx_s]), "build --pull"));
    assert_eq!(hits(&again), vec![2], "{again:?}");
    let status = again.iter().filter(|e| e["event"] == "pull").filter_map(|e| e["message"].as_str()).next_back();
    assert_eq!(status, Some(format!("Status: Image is up to date for {base}").as_str()));
    assert_clean(&builds);
}

#[test]
fn killing_a_pull_leaves_a_consistent_store() {
    if !ready() {
        return;
    }
    let Some((t, root)) = store_with_busybox() else { return };
    let reg = Registry::start(false);
    // A 100 MB layer of random bytes (stored uncompressed by import).
    let tree = t.path().join("big");
    std::fs::create_dir_all(&tree).unwrap();
    let mut data = vec![0u8; 100 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(tree.join("random"), &data).unwrap();
    drop(data);
    let tar = t.path().join("big.tar");
    crate::fixture::tar_of(&tree, &tar);
    std::fs::remove_dir_all(&tree).unwrap();
    rbuild_ok(&root, &["import", tar.to_str().unwrap(), "big"]);
    std::fs::remove_file(&tar).unwrap();
    let dest = format!("{}/big:latest", reg.host());
    push(&root, "big", &dest);

    let fresh = t.path().join("fresh");
    ImageStore::open(&fresh).unwrap();
    let mut caught = false;
    for _attempt in 0..5 {
        let mut child = crate::fixture::rbuild_command()
            .env("RBUILD_ROOT", &fresh)
            .args(["pull", &dest])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once part of the layer is in its work dir.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if partial_download(&fresh.join("tmp")) {
                child.kill().unwrap(); // SIGKILL
                caught = true;
                break;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.wait();
        if caught {
            break;
        }
        // It finished first: start over from an empty store.
        std::fs::remove_dir_all(&fresh).unwrap();
        ImageStore::open(&fresh).unwrap();
    }
    assert!(caught, "the pull always finished before it could be killed");
    let out = ok(rb(&fresh, &[], &["store", "check"]), "store check");
    assert!(out.contains("is consistent") && !out.contains("error:"), "{out}");
    assert!(ok(rb(&fresh, &[], &["images", "-q"]), "images").trim().is_empty());
    // The next pull completes and gc leaves nothing behind.
    ok(rb(&fresh, &[], &["pull", &dest]), "pull after the kill");
    ok(rb(&fresh, &[], &["store", "gc"]), "store gc");
    assert_clean(&fresh);
}

/// Whether a `pull-*` file with some but not all of its bytes is in a work dir under `tmp`.
fn partial_download(tmp: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir(tmp) else { return false };
    for d in dirs.flatten() {
        let Ok(files) = std::fs::read_dir(d.path()) else { continue };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().starts_with("pull-")
                && f.metadata().map(|m| m.len() > (1 << 20)).unwrap_or(false)
            {
                return true;
            }
        }
    }
    false
}

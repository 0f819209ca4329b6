//! The shared build cache (`--cache-to`, `--cache-from`) between two stores, as two CI jobs
//! on fresh runners use it: store A builds and exports its cache to Debian's
//! `docker-registry` on 127.0.0.1 (or an OCI layout directory); an empty store B builds the
//! same context with `--cache-from` and takes every step from that cache, with the same image
//! ID; a source edit reruns from its COPY; misses against the imported cache are explained;
//! a cache mount exported with `cache-mounts=true` is warm in B.
//!
//! The base image comes from the test registry in both stores (pushed there from A's
//! imported busybox), so both key their FROM on the same manifest digest, as CI jobs pulling
//! one base do. Needs root, docker-registry, skopeo, htpasswd and curl (see
//! `tests/it/registry.rs`); skips without them, fails under CI=true.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fixture::{rbuild, rbuild_ok, store_with_busybox};
use crate::registry::{ready, Registry};

/// Store A (busybox imported and pushed to the registry as `<registry>/busybox`), the
/// registry, and a temp dir for contexts and more stores.
struct Setup {
    dir: tempfile::TempDir,
    store_a: PathBuf,
    registry: Registry,
}

impl Setup {
    fn new() -> Option<Setup> {
        if !ready() {
            return None;
        }
        let (dir, store_a) = store_with_busybox()?;
        let registry = Registry::start(false);
        rbuild_ok(&store_a, &["push", "busybox", &format!("{}/busybox:latest", registry.host())]);
        Some(Setup { dir, store_a, registry })
    }

    /// A context `name` with a Dockerfile (`{REG}` stands for the registry) and files.
    fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.dir.path().join(name);
        std::fs::create_dir_all(&ctx).expect("mkdir");
        std::fs::write(ctx.join("Dockerfile"), dockerfile.replace("{REG}", &self.registry.host())).expect("write");
        for (path, text) in files {
            let p = ctx.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        ctx
    }

    /// A new, empty store.
    fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cache_ref(&self) -> String {
        format!("{}/cache:x", self.registry.host())
    }
}

/// The app: a cache mount written by A, a COPY of the sources and a RUN reading them.
const APP: &str = "FROM {REG}/busybox
ENV APP=1
RUN --mount=type=cache,target=/c echo written-by-A > /c/file && mkdir /out && echo built > /out/x
COPY src/ /app/
RUN cat /app/main.txt > /out/y
CMD [\"sh\"]
";

fn build(root: &Path, args: &[&str]) -> String {
    rbuild_ok(root, &[&["build"], args].concat())
}

fn built_id(output: &str) -> String {
    output.lines().find_map(|l| l.strip_prefix("Successfully built ")).unwrap_or_default().to_string()
}

/// Step numbers whose classic output says ` ---> Using cache`.
fn cached_steps(output: &str) -> Vec<usize> {
    let mut step = 0;
    let mut hits = Vec::new();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("Step ") {
            step = rest.split('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if line == " ---> Using cache" {
            hits.push(step);
        }
    }
    hits
}

/// step -> miss message of a `--progress json` build.
fn misses(output: &str) -> Vec<(u64, String)> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "cache_miss")
        .map(|e| (e["step"].as_u64().unwrap_or(0), e["message"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn consistent(root: &Path) {
    let out = rbuild_ok(root, &["store", "check"]);
    assert!(out.contains("is consistent"), "{out}");
}

/// A file of image `id`'s filesystem in `root`.
fn file_in_image(root: &Path, id: &str, path: &str) -> String {
    let store = rbuild::store::ImageStore::open(root).expect("store");
    let image = store.resolve(id).expect("image");
    let dest = tempfile::tempdir().expect("tempdir");
    store.flatten_into(&image, dest.path()).expect("flatten");
    std::fs::read_to_string(dest.path().join(path)).unwrap_or_else(|e| panic!("{path} in {id}: {e}"))
}

#[test]
fn a_registry_cache_makes_a_fresh_store_hit_every_step() {
    let Some(s) = Setup::new() else { return };
    let ctx = s.context("app", APP, &[("src/main.txt", "v1\n")]);
    let ctx_s = ctx.to_str().expect("utf8");
    let cache_to = format!("type=registry,ref={},mode=max,cache-mounts=true", s.cache_ref());
    let cache_from = format!("type=registry,ref={}", s.cache_ref());

    let a = build(&s.store_a, &["--cache-to", &cache_to, ctx_s]);
    assert!(cached_steps(&a).is_empty(), "{a}");
    assert!(a.contains(&format!("exporting cache to {}: 5 records, 1 cache mounts", s.cache_ref())), "{a}");
    // busybox's layer was pushed to <registry>/busybox: the registry mounts it, no upload.
    assert!(a.contains("1 mounted"), "{a}");
    let id = built_id(&a);

    // An empty store: the base is pulled, every other step comes from the cache.
    let b_root = s.store("b");
    let b = build(&b_root, &["--cache-from", &cache_from, ctx_s]);
    assert!(b.contains(&format!("importing cache {}: 5 records, 1 cache mounts", s.cache_ref())), "{b}");
    assert_eq!(cached_steps(&b), [2, 3, 4, 5, 6], "{b}");
    assert_eq!(built_id(&b), id, "{b}");
    assert!(!b.contains("Running in"), "nothing ran: {b}");
    assert_eq!(file_in_image(&b_root, &id, "out/y"), "v1\n");
    consistent(&b_root);
    // The hits were recorded locally: without the cache, B still hits.
    assert_eq!(cached_steps(&build(&b_root, &[ctx_s])), [2, 3, 4, 5, 6]);

    // A source edit: a fresh store reruns from that COPY only, and says why against the
    // imported record.
    std::fs::write(ctx.join("src/main.txt"), "v2\n").expect("edit");
    let b_edit = build(&b_root, &["--cache-from", &cache_from, ctx_s]);
    assert_eq!(cached_steps(&b_edit), [2, 3], "{b_edit}");
    let c_root = s.store("c");
    let c = build(&c_root, &["--cache-from", &cache_from, ctx_s]);
    assert_eq!(cached_steps(&c), [2, 3], "{c}");
    let c_json = build(&s.store("c2"), &["--progress", "json", "--cache-from", &cache_from, ctx_s]);
    assert_eq!(
        misses(&c_json),
        [
            (4, "source changed: src/main.txt".to_owned()),
            (5, "parent step missed".to_owned()),
            (6, "parent step missed".to_owned())
        ],
        "{c_json}"
    );
    assert_eq!(file_in_image(&c_root, &built_id(&c), "out/y"), "v2\n");
}

#[test]
fn misses_against_an_imported_cache_are_explained() {
    let Some(s) = Setup::new() else { return };
    let ctx = s.context("app", APP, &[("src/main.txt", "v1\n")]);
    build(&s.store_a, &["--cache-to", &format!("type=registry,ref={}", s.cache_ref()), ctx.to_str().expect("utf8")]);
    let cache_from = format!("type=registry,ref={}", s.cache_ref());
    let changed = s.context("changed", &APP.replace("ENV APP=1", "ENV APP=2"), &[("src/main.txt", "v1\n")]);
    let out =
        build(&s.store("d"), &["--progress", "json", "--cache-from", &cache_from, changed.to_str().expect("utf8")]);
    assert_eq!(misses(&out)[0], (2, "instruction changed: ENV APP=1 -> ENV APP=2".to_owned()), "{out}");
    let other = s.context("other", "FROM {REG}/busybox\nLABEL x=y\n", &[]);
    let out = build(&s.store("e"), &["--progress", "json", "--cache-from", &cache_from, other.to_str().expect("utf8")]);
    assert_eq!(misses(&out), [(2, format!("no record in cache {}", s.cache_ref()))], "{out}");
    // A cache that is not there yet (a first CI run) is a warning, not a failure.
    let absent = format!("type=registry,ref={}/nothing:here", s.registry.host());
    let out = build(&s.store("f"), &["--cache-from", &absent, other.to_str().expect("utf8")]);
    assert!(out.contains("nothing:here: not found, building without it"), "{out}");
    // A malformed flag names itself.
    let bad =
        rbuild(&s.store("g"), &["build", "--cache-to", "type=registry,ref=x,mode=all", ctx.to_str().expect("utf8")]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--cache-to \"type=registry,ref=x,mode=all\": mode=all: expected min or max"), "{err}");
}

#[test]
fn an_exported_cache_mount_is_warm_in_another_store() {
    let Some(s) = Setup::new() else { return };
    let ctx = s.context("app", APP, &[("src/main.txt", "v1\n")]);
    let cache_to = format!("type=registry,ref={},mode=max,cache-mounts=true,compression=zstd", s.cache_ref());
    build(&s.store_a, &["--cache-to", &cache_to, ctx.to_str().expect("utf8")]);
    // A new step (it misses, so it runs) reads the cache mount A's build wrote.
    let reader = s.context("reader", "FROM {REG}/busybox\nRUN --mount=type=cache,target=/c cat /c/file > /seen\n", &[]);
    let b_root = s.store("b");
    let from = format!("type=registry,ref={}", s.cache_ref());
    let out = build(&b_root, &["--cache-from", &from, reader.to_str().expect("utf8")]);
    assert_eq!(file_in_image(&b_root, &built_id(&out), "seen"), "written-by-A\n");
    // Without cache-mounts=true the directory stays home: the same step sees an empty cache.
    let plain = format!("{}/plain:x", s.registry.host());
    build(&s.store_a, &["--cache-to", &format!("type=registry,ref={plain},mode=max"), ctx.to_str().expect("utf8")]);
    let cold = s.context("cold", "FROM {REG}/busybox\nRUN --mount=type=cache,target=/c ls /c > /seen\n", &[]);
    let c_root = s.store("c");
    let out = build(&c_root, &["--cache-from", &format!("type=registry,ref={plain}"), cold.to_str().expect("utf8")]);
    assert_eq!(file_in_image(&c_root, &built_id(&out), "seen"), "");
}

#[test]
fn a_local_cache_directory_works_like_the_registry() {
    let Some(s) = Setup::new() else { return };
    // Two stages: mode=min exports the final stage's steps only, mode=max every stage's.
    let text = "FROM {REG}/busybox AS tools\nRUN echo tool > /tool\nFROM {REG}/busybox\nCOPY --from=tools /tool /tool\nCOPY src/ /app/\nRUN cat /app/main.txt /tool > /out\n";
    let ctx = s.context("app", text, &[("src/main.txt", "v1\n")]);
    let ctx_s = ctx.to_str().expect("utf8");
    let (min_dir, max_dir) = (s.dir.path().join("cache-min"), s.dir.path().join("cache-max"));
    let a = build(
        &s.store_a,
        &[
            "--cache-to",
            &format!("type=local,dest={}", min_dir.display()),
            "--cache-to",
            &format!("type=local,dest={},mode=max", max_dir.display()),
            ctx_s,
        ],
    );
    assert!(a.contains(&format!("exporting cache to {}: 3 records", min_dir.display())), "{a}");
    assert!(a.contains(&format!("exporting cache to {}: 4 records", max_dir.display())), "{a}");
    let id = built_id(&a);
    // An OCI image layout whose index names the cache manifest.
    let index: Value =
        serde_json::from_slice(&std::fs::read(max_dir.join("index.json")).expect("index")).expect("json");
    assert_eq!(index["manifests"][0]["artifactType"], "application/vnd.rbuild.cache.v1");
    assert!(max_dir.join("oci-layout").is_file());

    let b_root = s.store("b");
    let b = build(&b_root, &["--cache-from", &format!("type=local,src={}", max_dir.display()), ctx_s]);
    assert_eq!(cached_steps(&b), [2, 4, 5, 6], "{b}");
    assert_eq!(built_id(&b), id);
    consistent(&b_root);
    // mode=min: the first stage runs again, the final stage's steps still hit (their keys
    // chain on the first stage's keys, not its images).
    let c = build(&s.store("c"), &["--cache-from", &format!("type=local,src={}", min_dir.display()), ctx_s]);
    assert_eq!(cached_steps(&c), [4, 5, 6], "{c}");
    assert_eq!(built_id(&c), id);
}

#[test]
fn a_classic_cache_from_image_seeds_hits_from_its_history() {
    let Some(s) = Setup::new() else { return };
    let ctx = s.context("app", APP, &[("src/main.txt", "v1\n")]);
    let ctx_s = ctx.to_str().expect("utf8");
    let a = build(&s.store_a, &["-t", "app:1", ctx_s]);
    let id = built_id(&a);
    let image = format!("{}/app:1", s.registry.host());
    rbuild_ok(&s.store_a, &["push", "app:1", &image]);

    // Docker's classic --cache-from: B pulls the image and matches its history step by step.
    let b_root = s.store("b");
    let b = build(&b_root, &["--cache-from", &image, ctx_s]);
    assert_eq!(cached_steps(&b), [2, 3, 4, 5, 6], "{b}");
    assert_eq!(built_id(&b), id, "the last step is the image itself: {b}");
    assert!(!b.contains("Running in"), "nothing ran: {b}");
    consistent(&b_root);

    // A source edit: the COPY's tarsum no longer matches; it and what follows run.
    std::fs::write(ctx.join("src/main.txt"), "v2\n").expect("edit");
    let c_root = s.store("c");
    let c = build(&c_root, &["--cache-from", &image, ctx_s]);
    assert_eq!(cached_steps(&c), [2, 3], "{c}");
    assert_eq!(file_in_image(&c_root, &built_id(&c), "out/y"), "v2\n");
    // An image that cannot be had is a warning.
    let missing = format!("{}/nothing:here", s.registry.host());
    let out = build(&s.store("d"), &["--cache-from", &missing, ctx_s]);
    assert!(out.contains(&format!("--cache-from {missing}:")) && out.contains("building without it"), "{out}");
}

#[test]
fn a_damaged_cache_costs_a_rerun_not_the_build() {
    let Some(s) = Setup::new() else { return };
    let ctx = s.context("app", "FROM {REG}/busybox\nRUN echo made > /made\nCMD [\"sh\"]\n", &[]);
    let ctx_s = ctx.to_str().expect("utf8");
    let dir = s.dir.path().join("cache");
    let a = build(&s.store_a, &["--cache-to", &format!("type=local,dest={}", dir.display()), ctx_s]);
    // Flip the RUN layer's bytes: its digest no longer matches.
    let store = rbuild::store::ImageStore::open(&s.store_a).expect("store");
    let layer = store.resolve(&built_id(&a)).expect("image").layers.last().expect("layer").digest.clone();
    let blob = dir.join("blobs/sha256").join(layer.hex());
    let mut bytes = std::fs::read(&blob).expect("blob");
    bytes[20] ^= 0xff;
    std::fs::write(&blob, bytes).expect("tamper");
    let b_root = s.store("b");
    let b = build(&b_root, &["--cache-from", &format!("type=local,src={}", dir.display()), ctx_s]);
    assert!(b.contains(&format!("blob {layer} is corrupt")) && b.contains("running step 2 instead"), "{b}");
    assert!(b.contains("Running in"), "the RUN ran: {b}");
    assert_eq!(file_in_image(&b_root, &built_id(&b), "made"), "made\n");
    consistent(&b_root);
    // index.json that is not JSON: a warning, and the build goes on.
    std::fs::write(dir.join("index.json"), "{").expect("write");
    let c = build(&s.store("c"), &["--cache-from", &format!("type=local,src={}", dir.display()), ctx_s]);
    assert!(c.contains("index.json") && c.contains("building without it"), "{c}");
}

//! `rbuild build --builder docker://`: the same plan solved by dockerd's embedded BuildKit (as
//! LLB, the context served over rbuild's session) must give the image rbuild builds locally:
//! the same config and the same flattened root filesystem (times, IDs, history wording and
//! layer boundaries aside: BuildKit cuts layers per op). Built for the README example and a
//! set of differential cases, each in a store loaded with Docker's own busybox:latest so both
//! sides start from one base; a second remote build of the example shows cache hits.
//!
//! Needs root, busybox-static and a running dockerd (the differential suite's requirements).

use std::path::Path;

use super::compare::{differences, Allowance, Allowed, Expected};
use super::{docker_ok, image, make_context, ready, run_prefix, suite_dir, text};

/// Cases whose Dockerfiles dockerd 20.10's BuildKit can solve (no newer LLB capabilities, no
/// failure expected) and that cover COPY/ADD forms, multi-stage, RUN, WORKDIR, USER and config.
const CASES: &[&str] = &[
    "add-local-file",
    "add-tar-gz",
    "build-args",
    "copy-chown-named",
    "copy-dir-contents",
    "copy-file-rename",
    "copy-from-stage-into-existing",
    "copy-multiple-sources",
    "copy-symlinks-in-dir",
    "dockerignore",
    "entrypoint-cmd",
    "env-label-config",
    "multistage-copy-from",
    "run-modes-owners",
    "run-writes-files",
    "user-named",
    "workdir-relative",
];

/// What may differ between BuildKit's image and rbuild's local one.
fn allowed() -> Vec<Allowance> {
    vec![Allowance {
        id: "buildkit-layers".into(),
        what: "layer boundaries and history wording".into(),
        why: "BuildKit makes one layer per op (WORKDIR's mkdir too) and words history its own way".into(),
        everywhere: true,
        paths: Vec::new(),
        attributes: vec!["layers".into(), "history".into()],
    }]
}

/// Builds `context` with `extra` flags into `store` as `tag` and reads the saved image.
fn build(
    store: &Path,
    context: &Path,
    tag: &str,
    extra: &[&str],
    out: &Path,
) -> Result<(image::Image, String), String> {
    let mut args = vec!["build", "--progress", "plain", "-t", tag];
    args.extend_from_slice(extra);
    let context_arg = context.to_string_lossy();
    args.push(&context_arg);
    let built = crate::fixture::rbuild(store, &args);
    if !built.status.success() {
        return Err(format!("rbuild {args:?}: {}", text(&built)));
    }
    let archive = out.join(format!("{}.tar", tag.replace([':', '/'], "-")));
    let saved = crate::fixture::rbuild(store, &["save", "-o", &archive.to_string_lossy(), tag]);
    if !saved.status.success() {
        return Err(format!("rbuild save {tag}: {}", text(&saved)));
    }
    Ok((image::read_archive(&archive)?, String::from_utf8_lossy(&built.stdout).into_owned()))
}

/// Local and remote builds of one context: the differences, and the remote build's output.
fn compare_builds(store: &Path, name: &str, context: &Path, flags: &[String], out: &Path) -> Result<String, String> {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (local, _) = build(store, context, &format!("{}-local-{name}", run_prefix()), &flags, out)?;
    let mut remote_flags = vec!["--builder", "docker://"];
    remote_flags.extend_from_slice(&flags);
    let (remote, output) = build(store, context, &format!("{}-remote-{name}", run_prefix()), &remote_flags, out)?;
    let allowances = allowed();
    let problems = differences(
        &remote,
        &Expected { classic: None, buildkit: Some(&local) },
        &Allowed(allowances.iter().collect()),
    );
    if !problems.is_empty() {
        return Err(format!(
            "{name}: the BuildKit build (\"rbuild\" below) differs from the local one (\"docker\" below):\n{}",
            problems.join("\n")
        ));
    }
    Ok(output)
}

/// A store at `<dir>/store` holding Docker's own busybox:latest (what BuildKit resolves
/// `FROM busybox` to), so local and remote builds start from one base.
fn store_with_dockers_busybox(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let base = dir.join("busybox.tar");
    docker_ok(&["save", "-o", &base.to_string_lossy(), "busybox:latest"]).expect("docker save busybox");
    crate::fixture::rbuild_ok(&store, &["load", "-q", "-i", &base.to_string_lossy()]);
    store
}

#[test]
fn builds_through_dockerds_buildkit_match_local_builds() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_dockers_busybox(dir.path());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example");
    let mut failures = Vec::new();
    let first = compare_builds(&store, "example", &example, &[], dir.path());
    if let Err(e) = &first {
        failures.push(e.clone());
    }
    for name in CASES {
        let case_dir = suite_dir().join("cases").join(name);
        let context = dir.path().join("cases").join(name);
        make_context(&case_dir, &context).expect("context");
        let options = super::read_options(&case_dir).expect("case.toml");
        if let Err(e) = compare_builds(&store, name, &context, &super::build_flags(&options), dir.path()) {
            failures.push(e);
        }
    }
    // Again: BuildKit has every op of the example cached, and the classic output says so.
    let again = crate::fixture::rbuild(
        &store,
        &["build", "--progress", "plain", "--builder", "docker://", "-t", "again", &example.to_string_lossy()],
    );
    let output = text(&again);
    let run_step = output.split("Step 4/7 : RUN").nth(1).and_then(|rest| rest.split("Step 5/7").next());
    if !again.status.success() || !run_step.is_some_and(|step| step.contains(" ---> Using cache")) {
        failures.push(format!("the second build shows no cache hit for its RUN:\n{output}"));
    }
    let left = docker_ok(&["image", "ls", "-q", "--filter", "reference=rbuild-buildkit-*"]).unwrap_or_default();
    assert!(left.trim().is_empty(), "the temporary export names are removed from dockerd: {left}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A temp dir with the store of [`store_with_dockers_busybox`] and a context holding `dockerfile`.
fn store_and_context(dockerfile: &str) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_dockers_busybox(dir.path());
    let context = dir.path().join("ctx");
    std::fs::create_dir_all(&context).expect("mkdir");
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("write");
    (dir, store, context)
}

/// dockerd 20.10's BuildKit predates merge ops: `COPY --link` is refused by name and line.
#[test]
fn an_instruction_needing_a_newer_buildkit_is_named() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let (_dir, store, context) = store_and_context("FROM busybox\nRUN echo a\nCOPY --link Dockerfile /x\n");
    let out = crate::fixture::rbuild(&store, &["build", "--builder", "docker://", &context.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Dockerfile:3: COPY --link Dockerfile /x: needs a newer BuildKit")
            && stderr.contains("mergeop"),
        "{stderr}"
    );
}

/// `--secret` reaches a secret mount through the session (never the image's config or
/// history); `--no-cache` makes BuildKit run the step again; `--label` lands in the config.
#[test]
fn secrets_labels_and_no_cache_reach_buildkit() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let dockerfile =
        "FROM busybox\nRUN --mount=type=secret,id=tok,required wc -c < /run/secrets/tok > /size && cat /proc/sys/kernel/random/uuid > /ran\n";
    let (dir, store, context) = store_and_context(dockerfile);
    let secret = dir.path().join("tok.txt");
    std::fs::write(&secret, "s3cr3t-value").expect("write");
    let src = format!("id=tok,src={}", secret.display());
    let ctx = context.to_string_lossy();
    let flags = ["build", "--builder", "docker://", "--no-cache", "--secret", &src, "--label", "team=x", "-t"];
    let mut first = flags.to_vec();
    first.extend(["s:1", &ctx]);
    crate::fixture::rbuild_ok(&store, &first);
    let mut second = flags.to_vec();
    second.extend(["s:2", &ctx]);
    let output = crate::fixture::rbuild_ok(&store, &second);
    assert!(!output.contains("Using cache"), "--no-cache runs every step again:\n{output}");
    let read = |tag: &str, path: &str| crate::fixture::rbuild_ok(&store, &["run", "--rm", tag, "cat", path]);
    assert_eq!(read("s:1", "/size").trim(), "12");
    assert_ne!(read("s:1", "/ran"), read("s:2", "/ran"), "the RUN ran twice");
    let inspect = crate::fixture::rbuild_ok(&store, &["inspect", "s:1"]);
    assert!(inspect.contains("\"team\": \"x\""), "{inspect}");
    assert!(!inspect.contains("s3cr3t"), "the secret stays out of the image");
}

/// Runs `rbuild build` with rbuild's BuildKit debug logs on; returns (success, stdout, stderr).
fn build_logged(store: &Path, args: &[&str]) -> (bool, String, String) {
    let out = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", store)
        .env("RBUILD_LOG", "rbuild::buildkit=debug")
        .env_remove("CI")
        .args(args)
        .output()
        .expect("run rbuild");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A warm build (BuildKit has every op cached, so dockerd ends with the image it made last
/// time) takes the layers the store already has for that image instead of saving it from
/// dockerd again; the image is still whole (its files are there, its config is the plan's).
#[test]
fn a_warm_build_does_not_save_the_image_from_dockerd_again() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    // A nonce makes the first build's image one this store has never loaded.
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let dockerfile = format!(
        "FROM busybox\nRUN echo '{nonce}' > /nonce && mkdir /d && touch /d/a /d/b\nCMD [\"cat\", \"/nonce\"]\n"
    );
    let (_dir, store, context) = store_and_context(&dockerfile);
    let ctx = context.to_string_lossy();
    let (ok, _, first) = build_logged(&store, &["build", "--builder", "docker://", "-t", "w:1", &ctx]);
    assert!(ok && first.contains("saving dockerd's image"), "the first build saves and loads:\n{first}");
    let (ok, out, second) = build_logged(&store, &["build", "--builder", "docker://", "-t", "w:2", &ctx]);
    assert!(ok, "{second}");
    assert!(second.contains("was loaded before") && !second.contains("saving dockerd's image"), "{second}");
    assert!(out.contains("Using cache"), "{out}");
    let ran = crate::fixture::rbuild_ok(&store, &["run", "--rm", "w:2"]);
    assert_eq!(ran.trim(), nonce);
    let files = crate::fixture::rbuild_ok(&store, &["run", "--rm", "w:2", "ls", "/d"]);
    assert_eq!(files.split_whitespace().collect::<Vec<_>>(), ["a", "b"]);
    let layers =
        |tag: &str| crate::fixture::rbuild_ok(&store, &["inspect", "--format", "{{json .RootFS.Layers}}", tag]);
    assert_eq!(layers("w:1"), layers("w:2"), "both builds have BuildKit's layers");
}

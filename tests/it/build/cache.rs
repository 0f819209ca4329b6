//! `rbuild build` end to end, as root, against a store in a temp dir with a busybox base
//! imported from Debian's busybox-static: the Docker notes' cache scenario, the JSON events'
//! miss reasons, and a failing RUN.
//!
//! Needs root (containers, overlay mounts) and /bin/busybox; skips with a message otherwise,
//! and fails under CI=true.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::fixture::{rbuild, rbuild_ok, store_with_busybox};
use serde_json::Value;

/// A copy of testdata/example in `dir`.
fn example_context(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example");
    let dest = dir.join("example");
    let status = std::process::Command::new("cp").arg("-a").arg(&src).arg(&dest).status().expect("cp");
    assert!(status.success());
    dest
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build(root: &Path, args: &[&str]) -> String {
    rbuild_ok(root, &[&["build"], args].concat())
}

fn built_id(output: &str) -> String {
    output.lines().find_map(|l| l.strip_prefix("Successfully built ")).unwrap_or_default().to_string()
}

fn cached_steps(output: &str) -> usize {
    output.lines().filter(|l| *l == " ---> Using cache").count()
}

/// The JSON events of a build.
fn events(root: &Path, context: &Path, extra: &[&str]) -> Vec<Value> {
    let ctx = context.to_str().expect("utf8");
    let out = build(root, &[&["--progress", "json"], extra, &[ctx]].concat());
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// step number -> miss message, for every cache miss.
fn misses(events: &[Value]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "cache_miss")
        .map(|e| (e["step"].as_u64().unwrap_or(0), e["message"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn the_docker_notes_scenario() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = example_context(t.path());
    let ctx_s = ctx.to_str().expect("utf8");

    // First build: every step after FROM runs.
    let first = build(&root, &["-t", "app:1", ctx_s]);
    assert_eq!(cached_steps(&first), 0, "{first}");
    assert!(first.contains("Step 1/7 : FROM busybox"), "{first}");
    assert!(first.contains(" ---> Running in "), "{first}");
    assert!(first.contains("Removing intermediate container "), "{first}");
    assert!(first.contains("Successfully tagged app:1"), "{first}");
    let id = built_id(&first);
    assert_eq!(id.len(), 12, "{first}");

    // Rebuild: every step from cache, same image.
    let again = build(&root, &["-t", "app:1", ctx_s]);
    assert_eq!(cached_steps(&again), 6, "{again}");
    assert_eq!(built_id(&again), id);

    // touch of every file: content-addressed, still all cached.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("find . -exec touch {} +")
        .current_dir(&ctx)
        .status()
        .expect("touch");
    assert!(status.success());
    assert_eq!(cached_steps(&build(&root, &[ctx_s])), 6);

    // A .dockerignored file changes: still cached, and it is not in the image.
    std::fs::write(ctx.join("build.log"), "another log line\n").expect("write");
    std::fs::write(ctx.join("secrets/token"), "rotated\n").expect("write");
    assert_eq!(cached_steps(&build(&root, &[ctx_s])), 6);

    // Bump REFRESHED_AT: MAINTAINER hits, ENV and everything after it rerun.
    let dockerfile = std::fs::read_to_string(ctx.join("Dockerfile")).expect("read");
    std::fs::write(ctx.join("Dockerfile"), dockerfile.replace("2016-11-09", "2016-11-10")).expect("write");
    let bumped = build(&root, &[ctx_s]);
    assert_eq!(cached_steps(&bumped), 1, "{bumped}");
    let step3 = bumped.split("Step 3/7").nth(1).unwrap_or_default();
    assert!(
        step3.contains("Cache miss: instruction changed: ENV REFRESHED_AT=2016-11-09 -> ENV REFRESHED_AT=2016-11-10"),
        "{bumped}"
    );
    assert_ne!(built_id(&bumped), id);

    // Edit one copied file: steps before its COPY hit, COPY and after miss.
    std::fs::write(ctx.join("app/app.conf"), "listen 8080\n").expect("write");
    let edited = events(&root, &ctx, &[]);
    let hits: Vec<u64> =
        edited.iter().filter(|e| e["event"] == "cache_hit").map(|e| e["step"].as_u64().unwrap_or(0)).collect();
    assert_eq!(hits, [2, 3, 4]);
    assert_eq!(misses(&edited)[0], (5, "source changed: app/app.conf".to_string()));

    // --no-cache: nothing from cache.
    let nocache = build(&root, &["--no-cache", ctx_s]);
    assert_eq!(cached_steps(&nocache), 0, "{nocache}");

    // The image has the copied app, the RUN's file, and neither ignored file.
    let tagged = rbuild_ok(&root, &["images", "-q", "app:1"]);
    assert!(!tagged.trim().is_empty());
    let store = rbuild::store::ImageStore::open(&root).expect("store");
    let image = store.resolve("app:1").expect("app:1");
    let rootfs = t.path().join("flat");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    store.flatten_into(&image, &rootfs).expect("flatten");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/www/html/index.html")).expect("index"),
        "Hi, I am in your container\n"
    );
    assert!(rootfs.join("opt/app/start.sh").is_file());
    assert!(!rootfs.join("opt/app/build.log").exists() && !rootfs.join("build.log").exists());
    assert!(!rootfs.join("opt/app/secrets").exists());
    rbuild_ok(&root, &["store", "check"]);
}

#[test]
fn every_miss_has_a_reason() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(ctx.join("app")).expect("mkdir");
    std::fs::write(ctx.join("app/main.py"), "print(1)\n").expect("write");
    let write_dockerfile = |env: &str| {
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nENV MODE={env}\nARG VERSION=1\nRUN echo $VERSION > /v\nCOPY app/ /app/\nRUN true\n"),
        )
        .expect("write")
    };
    write_dockerfile("a");

    let first = events(&root, &ctx, &[]);
    assert_eq!(misses(&first)[0], (2, "no cache record".to_string()));
    assert!(misses(&first)[1..].iter().all(|(_, m)| m == "parent step missed"), "{:?}", misses(&first));

    let none = events(&root, &ctx, &[]);
    assert!(misses(&none).is_empty());

    write_dockerfile("b");
    assert_eq!(misses(&events(&root, &ctx, &[]))[0], (2, "instruction changed: ENV MODE=a -> ENV MODE=b".to_string()));

    let with_arg = events(&root, &ctx, &["--build-arg", "VERSION=2"]);
    assert_eq!(misses(&with_arg)[0], (4, "build arg changed: VERSION".to_string()), "the ARG itself hits");

    std::fs::write(ctx.join("app/main.py"), "print(2)\n").expect("write");
    assert_eq!(
        misses(&events(&root, &ctx, &["--build-arg", "VERSION=2"]))[0],
        (5, "source changed: app/main.py".to_string())
    );

    let no_cache = events(&root, &ctx, &["--no-cache"]);
    assert!(misses(&no_cache).iter().all(|(_, m)| m == "--no-cache"));
    assert_eq!(misses(&no_cache).len(), 5);
    // Every step_done of a miss carries the image ID and duration.
    for e in no_cache.iter().filter(|e| e["event"] == "step_done") {
        assert!(e["image_id"].as_str().is_some_and(|s| s.starts_with("sha256:")), "{e}");
        assert!(e["duration_ms"].is_u64(), "{e}");
    }
    assert_eq!(no_cache.last().map(|e| e["event"].clone()), Some(Value::from("build_done")));
}

#[test]
fn a_failing_run_reports_docker_style_and_keeps_earlier_steps() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo before > /state\nRUN false\n").expect("write");
    let out = rbuild(&root, &["build", ctx.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("The command '/bin/sh -c false' returned a non-zero code: 1"), "{err}");
    let last = err
        .lines()
        .find_map(|l| l.strip_prefix("The last image built before the failure is "))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(last.len(), 12, "{err}");
    // The last good image holds the state before the failure: debug it as the notes do.
    let state = rbuild_ok(&root, &["run", "--rm", &last, "cat", "/state"]);
    assert_eq!(state, "before\n");
    // The step that succeeded stays cached.
    let again = rbuild(&root, &["build", ctx.to_str().expect("utf8")]);
    assert_eq!(stdout(&again).lines().filter(|l| *l == " ---> Using cache").count(), 1);
    rbuild_ok(&root, &["store", "check"]);
}

#[test]
fn a_tar_context_on_stdin_builds_the_same_image() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = example_context(t.path());
    let from_dir = built_id(&build(&root, &[ctx.to_str().expect("utf8")]));
    let tar = std::process::Command::new("tar").arg("-C").arg(&ctx).args(["-cf", "-", "."]).output().expect("tar");
    assert!(tar.status.success());
    let mut child = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", &root)
        .args(["build", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(&tar.stdout).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let from_stdin = stdout(&out);
    assert_eq!(cached_steps(&from_stdin), 6, "same content, same keys: {from_stdin}");
    assert_eq!(built_id(&from_stdin), from_dir);
}

#[test]
fn copy_from_a_stage_is_keyed_on_the_files_it_copies() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = t.path().join("fromkey");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    let dockerfile = |run: &str| {
        let text = format!(
            "FROM busybox AS build\nRUN {run}\nFROM busybox AS app\nCOPY --from=build /out/app.txt /app/\nRUN cat /app/app.txt > /seen\nFROM app\nRUN cat /seen > /final\n"
        );
        std::fs::write(ctx.join("Dockerfile"), text).expect("write");
    };
    dockerfile("mkdir /out && echo hi > /out/app.txt");
    assert!(misses(&events(&root, &ctx, &[])).len() >= 3);
    // Whitespace in the stage's RUN: that RUN misses, the copied file is the same, so the
    // COPY --from, everything after it and a stage built FROM that stage hit (as in Docker).
    dockerfile("mkdir /out &&  echo hi > /out/app.txt");
    let m = misses(&events(&root, &ctx, &[]));
    assert_eq!(m.iter().map(|(step, _)| *step).collect::<Vec<_>>(), [2], "{m:?}");
    // Other content: the COPY misses, naming the stage and the path that changed.
    dockerfile("mkdir /out && echo ho > /out/app.txt");
    let m = misses(&events(&root, &ctx, &[]));
    assert_eq!(m.iter().map(|(step, _)| *step).collect::<Vec<_>>(), [2, 4, 5, 7], "{m:?}");
    assert_eq!(m[1].1, "source changed: /out/app.txt in stage build", "{m:?}");
    // The classic output names it too.
    dockerfile("mkdir /out && echo hu > /out/app.txt");
    let out = build(&root, &[ctx.to_str().expect("utf8")]);
    assert!(out.contains(" ---> Cache miss: source changed: /out/app.txt in stage build\n"), "{out}");
}

#[test]
fn a_failing_run_exits_with_its_status_and_global_args_are_steps() {
    // As `DOCKER_BUILDKIT=0 docker build`: the ARGs before FROM are steps 1 and 2 (printing
    // nothing more), and the build exits with the failing command's status.
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), "ARG X=1\nARG Y=2\nFROM busybox\nRUN echo hi\nRUN exit 3\n").expect("write");
    let out = rbuild(&root, &["build", ctx.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    let steps: Vec<&str> = text.lines().filter(|l| l.starts_with("Step ")).collect();
    assert_eq!(
        steps,
        [
            "Step 1/5 : ARG X=1",
            "Step 2/5 : ARG Y=2",
            "Step 3/5 : FROM busybox",
            "Step 4/5 : RUN echo hi",
            "Step 5/5 : RUN exit 3"
        ]
    );
    assert!(text.starts_with("Sending build context"), "{text}");
    assert!(text.contains("Step 2/5 : ARG Y=2\nStep 3/5 : FROM busybox\n ---> "), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("The command '/bin/sh -c exit 3' returned a non-zero code: 3"), "{err}");
    // A heredoc's failure shows the script that ran, not just `<<EOF`.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN <<EOF\necho start\nexit 4\nEOF\n").expect("write");
    let out = rbuild(&root, &["build", ctx.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("The command '/bin/sh -c echo start\nexit 4\n' returned a non-zero code: 4"), "{err}");
}

#[test]
fn a_miss_is_explained_only_against_the_same_dockerfile() {
    let Some((t, root)) = store_with_busybox() else { return };
    let context = |name: &str, run: &str| {
        let ctx = t.path().join(name);
        std::fs::create_dir_all(&ctx).expect("mkdir");
        std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {run}\n")).expect("write");
        ctx
    };
    let app = context("app", "echo app");
    events(&root, &app, &[]);
    // Another project's first step after the same FROM is not "this instruction changed".
    let other = context("other", "echo other");
    assert_eq!(misses(&events(&root, &other, &[])), [(2, "no cache record".to_string())]);
    let app = context("app", "echo app v2");
    assert_eq!(
        misses(&events(&root, &app, &[])),
        [(2, "instruction changed: RUN echo app -> RUN echo app v2".to_string())]
    );
}

/// A fully cached rebuild leaves the image as the first build made it: its parent link, so
/// `history` names every step's image and no intermediate image shows up as dangling; and
/// sizes count file content, as Docker's do.
#[test]
fn a_cached_rebuild_keeps_the_parent_link_and_sizes_count_file_content() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = example_context(t.path());
    let ctx = ctx.to_str().expect("utf8");
    let first = built_id(&build(&root, &["-t", "example", ctx]));
    let parent = rbuild_ok(&root, &["inspect", "--format", "{{.Parent}}", "example"]);
    assert!(parent.trim().starts_with("sha256:"), "{parent:?}");
    let again = build(&root, &["-t", "example", ctx]);
    assert_eq!((built_id(&again), cached_steps(&again)), (first, 6), "{again}");
    assert_eq!(rbuild_ok(&root, &["inspect", "--format", "{{.Parent}}", "example"]), parent);
    let history = rbuild_ok(&root, &["history", "-q", "example"]);
    assert!(!history.contains("<missing>"), "{history}");
    let images = rbuild_ok(&root, &["images", "--format", "{{.Repository}}"]);
    assert_eq!(images.lines().filter(|l| *l == "<none>").count(), 0, "{images}");

    // The RUN wrote index.html (27 bytes), the COPY app.conf and start.sh (29 + 99 bytes).
    let sizes =
        rbuild_ok(&root, &["history", "--no-trunc", "-H=false", "--format", "{{.Size}} {{.CreatedBy}}", "example"]);
    let size_of = |what: &str| {
        let line = sizes.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what} in {sizes}"));
        line.split(' ').next().unwrap_or_default().to_string()
    };
    assert_eq!(size_of("index.html"), "27");
    assert_eq!(size_of("COPY dir:"), "128");
    let inspect_size = |image: &str| -> u64 {
        rbuild_ok(&root, &["inspect", "--format", "{{.Size}}", image]).trim().parse().expect("a number")
    };
    assert_eq!(inspect_size("example") - inspect_size("busybox"), 27 + 128);
}

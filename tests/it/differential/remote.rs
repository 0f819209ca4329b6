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

/// Builds `dockerfile` through `--builder docker://` (taking BuildKit's turn); the outcome and stderr.
fn build_through_dockerd(dockerfile: &str) -> (std::process::Output, String) {
    let _turn = super::buildkit_turn();
    let (_dir, store, context) = store_and_context(dockerfile);
    let out = crate::fixture::rbuild(&store, &["build", "--builder", "docker://", &context.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// dockerd 20.10's BuildKit predates merge ops: `COPY --link` is refused by name and line.
#[test]
fn an_instruction_needing_a_newer_buildkit_is_named() {
    if !ready() {
        return;
    }
    let (out, stderr) = build_through_dockerd("FROM busybox\nRUN echo a\nCOPY --link Dockerfile /x\n");
    assert!(!out.status.success());
    assert!(
        stderr.contains("Dockerfile:3: COPY --link Dockerfile /x: needs a newer BuildKit")
            && stderr.contains("mergeop"),
        "{stderr}"
    );
}

/// The definition would ask BuildKit for `security.insecure`; rbuild asks only with `--allow
/// security.insecure`, so without it the build is refused before anything is solved.
#[test]
fn an_insecure_run_is_not_solved_without_allow() {
    if !ready() {
        return;
    }
    let (out, stderr) = build_through_dockerd("FROM busybox\nRUN --security=insecure true\n");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Dockerfile:2: RUN --security=insecure true: needs --allow security.insecure"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Step 1/"), "nothing was solved");
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

/// A cold build takes the new layers from dockerd's overlay2 directories (the base layer the
/// store holds is not copied; no `docker save`); a warm build (BuildKit has every op cached, so
/// dockerd ends with the image it made last time) takes the layers the store already has for
/// that image. The image is whole either way (its files are there, its config is the plan's,
/// its base layer is the store's busybox layer).
#[test]
fn a_warm_build_does_not_save_the_image_from_dockerd_again() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    // A nonce makes the first build's image one this store has never loaded.
    let nonce = format!("warm-{}-{}", std::process::id(), nanos_now());
    let dockerfile = format!(
        "FROM busybox\nRUN echo '{nonce}' > /nonce && mkdir /d && touch /d/a /d/b\nCMD [\"cat\", \"/nonce\"]\n"
    );
    let (_dir, store, context) = store_and_context(&dockerfile);
    let ctx = context.to_string_lossy();
    let (ok, _, first) = build_logged(&store, &["build", "--builder", "docker://", "-t", "w:1", &ctx]);
    assert!(
        ok && first.contains("from its overlay2 layer directories") && !first.contains("saving dockerd's image"),
        "the first build reads dockerd's layer directories:\n{first}"
    );
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
    let base = crate::fixture::rbuild_ok(&store, &["inspect", "--format", "{{json .RootFS.Layers}}", "busybox"]);
    let base_layer = base.trim().trim_start_matches('[').split(',').next().expect("a layer").trim_end_matches(']');
    assert!(layers("w:1").starts_with(&format!("[{base_layer}")), "the base layer is the store's: {base}");
}

/// The temporary names of the store's claims (`buildkit/exporting/`), and whether dockerd has `name`.
fn claimed_names(store: &Path) -> Vec<String> {
    let dir = store.join("buildkit/exporting");
    let names = std::fs::read_dir(dir).into_iter().flatten().flatten();
    names.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect()
}

fn dockerd_has(name: &str) -> bool {
    docker_ok(&["image", "ls", "-q", "--filter", &format!("reference={name}")]).is_ok_and(|ids| !ids.trim().is_empty())
}

/// Ctrl-C while BuildKit runs a step: rbuild ends with 130 and "build interrupted", BuildKit
/// stops the step (its process goes), and nothing is left in dockerd or in the store's
/// claims. `kill -9` cannot clean up: its claim on the temporary name stays, and the next
/// build against that dockerd removes the name from dockerd (here given to an image, as the
/// exporter does when the kill comes after the export) and the claim.
#[test]
fn an_interrupted_or_killed_build_leaves_no_name_in_dockerd() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let marker = 4000 + nanos_now() % 900;
    let dockerfile = format!("FROM busybox\nRUN echo {} && sleep {marker}.5\n", nanos_now());
    let (_dir, store, context) = store_and_context(&dockerfile);
    let running = || {
        let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().expect("ps");
        String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.trim() == format!("sleep {marker}.5"))
    };
    let start = |args: &[&str]| {
        crate::fixture::rbuild_command()
            .env("RBUILD_ROOT", &store)
            .args(args)
            .arg(&context)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("rbuild build")
    };
    let wait_for_step = |child: &std::process::Child| {
        for _ in 0..600 {
            if running() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the RUN step of pid {} never started in dockerd", child.id());
    };

    let build = start(&["build", "--builder", "docker://", "-t", "int:1"]);
    wait_for_step(&build);
    let pid = build.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let out = build.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("build interrupted"), "{stderr}");
    let stopped = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !running()
    });
    assert!(stopped, "BuildKit still runs the step rbuild gave up");
    assert_eq!(claimed_names(&store), Vec::<String>::new(), "an interrupted build releases its claim");

    let build = start(&["build", "--builder", "docker://", "-t", "int:2"]);
    wait_for_step(&build);
    let claimed = claimed_names(&store);
    assert_eq!(claimed.len(), 1, "the running build claims one name: {claimed:?}");
    let name = claimed[0].clone();
    assert!(name.starts_with("rbuild-buildkit-"), "{name}");
    let mut build = build;
    build.kill().expect("kill -9");
    let _ = build.wait();
    let stopped = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        !running()
    });
    assert!(stopped, "BuildKit still runs the step of a killed rbuild");
    // As the exporter names its image: the name is in dockerd, its build is gone.
    docker_ok(&["tag", "busybox", &name]).expect("docker tag");
    assert_eq!(claimed_names(&store), vec![name.clone()], "a killed build's claim stays");
    // The next build of this store against this dockerd (another Dockerfile: a quick one).
    let quick = context.with_file_name("quick");
    std::fs::create_dir_all(&quick).expect("mkdir");
    std::fs::write(quick.join("Dockerfile"), "FROM busybox\nRUN echo quick > /q\n").expect("write");
    crate::fixture::rbuild_ok(&store, &["build", "--builder", "docker://", "-t", "int:3", &quick.to_string_lossy()]);
    assert!(!dockerd_has(&name), "the next build removes the name a killed build left in dockerd");
    assert_eq!(claimed_names(&store), Vec::<String>::new(), "and the claim");
}

/// `--progress=json` through BuildKit: each step's `step_done` carries the time its ops ran
/// (BuildKit's own start and completion times), and says whether BuildKit had it cached.
#[test]
fn json_progress_times_the_steps_buildkit_ran() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let dockerfile = format!("FROM busybox\nRUN echo {} && sleep 1.2\n", nanos_now());
    let (_dir, store, context) = store_and_context(&dockerfile);
    let ctx = context.to_string_lossy();
    let run_step = |out: &str| -> serde_json::Value {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["event"] == "step_done" && e["step"] == 2)
            .unwrap_or_else(|| panic!("no step_done for the RUN:\n{out}"))
    };
    let args = ["build", "--builder", "docker://", "--progress", "json", "-t", "j:1", &ctx];
    let first = run_step(&crate::fixture::rbuild_ok(&store, &args));
    let ms = first["duration_ms"].as_u64().unwrap_or(0);
    assert!(first["cached"] == false && (1200..60_000).contains(&ms), "{first}");
    let again = run_step(&crate::fixture::rbuild_ok(&store, &args));
    assert!(again["cached"] == true && again["duration_ms"].as_u64().is_some_and(|ms| ms < 1200), "{again}");
}

/// A failing RUN ends the build with the command's own exit status, as a local build does,
/// and the error names the step.
#[test]
fn a_failing_run_exits_with_its_status_and_names_the_step() {
    if !ready() {
        return;
    }
    let (out, stderr) = build_through_dockerd("FROM busybox\nRUN echo fine\nRUN exit 7\n");
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("step 3 (RUN exit 7) failed on BuildKit") && stderr.contains("exit code: 7"), "{stderr}");
}

/// `docker://?session=control`: the session (context, `.dockerignore`, secrets) goes through the
/// control API's `Session` stream, as buildkitd takes it, instead of dockerd's `/session`.
#[test]
fn the_session_runs_over_the_control_apis_session_stream() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let dockerfile = "FROM busybox\nCOPY . /ctx\nRUN --mount=type=secret,id=tok cp /run/secrets/tok /tok-copy\n";
    let (dir, store, context) = store_and_context(dockerfile);
    std::fs::write(context.join("kept.txt"), "kept").expect("write");
    std::fs::write(context.join("ignored.txt"), "ignored").expect("write");
    std::fs::write(context.join(".dockerignore"), "ignored.txt\n").expect("write");
    let secret = dir.path().join("tok");
    std::fs::write(&secret, "tunnelled").expect("write");
    let src = format!("id=tok,src={}", secret.display());
    let ctx = context.to_string_lossy();
    crate::fixture::rbuild_ok(
        &store,
        &["build", "--builder", "docker://?session=control", "--secret", &src, "-t", "tunnel", &ctx],
    );
    let listing = crate::fixture::rbuild_ok(&store, &["run", "--rm", "tunnel", "ls", "-A", "/ctx"]);
    let mut names: Vec<&str> = listing.split_whitespace().collect();
    names.sort_unstable();
    assert_eq!(names, [".dockerignore", "Dockerfile", "kept.txt"], "ignored.txt stays out");
    let copied = crate::fixture::rbuild_ok(&store, &["run", "--rm", "tunnel", "cat", "/tok-copy"]);
    assert_eq!(copied.trim_end(), "tunnelled");
}

/// The ID of BuildKit's cache record whose description holds `needle`, from `docker system df`.
fn build_cache_record(needle: &str) -> Option<String> {
    let json = docker_ok(&["system", "df", "-v", "--format", "{{json .BuildCache}}"]).ok()?;
    let records: Vec<serde_json::Value> = serde_json::from_str(json.trim()).ok()?;
    records
        .iter()
        .find(|r| r["Description"].as_str().is_some_and(|d| d.contains(needle)))
        .and_then(|r| r["ID"].as_str().map(str::to_string))
}

/// BuildKit's own cache through a registry: `--cache-to type=inline` leaves BuildKit's cache
/// metadata in the image's config; the image is pushed; with BuildKit's local record of the
/// RUN removed, `--cache-from type=registry,ref=` that image makes the RUN a cache hit again,
/// its layer fetched from the registry. A cache type dockerd's BuildKit cannot export is named.
#[test]
fn buildkits_inline_cache_travels_through_a_registry() {
    if !ready() || !crate::registry::ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let registry = crate::registry::Registry::start(false);
    let nonce = format!("inline-{}-{}", std::process::id(), nanos_now());
    let dockerfile = format!("FROM busybox\nRUN echo {nonce} > /n\n");
    let (_dir, store, context) = store_and_context(&dockerfile);
    let ctx = context.to_string_lossy();
    let image = format!("{}/inline:1", registry.host());
    let first = crate::fixture::rbuild(
        &store,
        &["build", "--builder", "docker://", "--cache-to", "type=inline", "-t", "inl", &ctx],
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("rbuild's local cache and its exported caches are separate"), "{stderr}");
    crate::fixture::rbuild_ok(&store, &["push", "inl", &image]);
    let record = build_cache_record(&format!("echo {nonce}")).expect("BuildKit's record of the RUN");
    docker_ok(&["builder", "prune", "-f", "--filter", &format!("id={record}")]).expect("prune the record");
    let cache_from = format!("type=registry,ref={image}");
    let again = crate::fixture::rbuild_ok(
        &store,
        &["build", "--progress", "plain", "--builder", "docker://", "--cache-from", &cache_from, "-t", "inl2", &ctx],
    );
    let run_step = again.split("Step 2/2 : RUN").nth(1).unwrap_or_default();
    assert!(run_step.contains(" ---> Using cache"), "the RUN comes from the registry's cache:\n{again}");
    assert!(registry.log().contains("GET /v2/inline/blobs/"), "BuildKit read the cache from the registry");
    let unsupported = crate::fixture::rbuild(
        &store,
        &["build", "--builder", "docker://", "--cache-to", &format!("type=registry,ref={}/c:x", registry.host()), &ctx],
    );
    let stderr = String::from_utf8_lossy(&unsupported.stderr);
    assert!(!unsupported.status.success());
    assert!(stderr.contains("--cache-to type=registry: this builder's BuildKit cannot export"), "{stderr}");
}

/// Nanoseconds since the epoch, for names no earlier run used.
fn nanos_now() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

/// A unix socket and a TCP port on 127.0.0.1 speaking what buildkitd's do (gRPC over plain
/// HTTP/2): each connection is upgraded at dockerd's `/grpc` and relayed both ways, so
/// `--builder unix://` and `tcp://` reach the BuildKit inside dockerd as they would reach a
/// buildkitd. No buildkitd is packaged for Debian. Returns the TCP address.
fn buildkitd_like_endpoints(socket: &Path) -> String {
    let unix = std::os::unix::net::UnixListener::bind(socket).expect("bind");
    std::thread::spawn(move || {
        for client in unix.incoming() {
            let Ok(client) = client else { return };
            let Ok(back) = client.try_clone() else { return };
            std::thread::spawn(move || relay_to_dockerd_grpc(client, back));
        }
    });
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = tcp.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for client in tcp.incoming() {
            let Ok(client) = client else { return };
            let Ok(back) = client.try_clone() else { return };
            std::thread::spawn(move || relay_to_dockerd_grpc(client, back));
        }
    });
    address
}

/// Relays one client connection (read from `client`, answered on `back`) to dockerd's `/grpc`.
fn relay_to_dockerd_grpc(mut client: impl std::io::Read + Send + 'static, mut back: impl std::io::Write) {
    use std::io::{Read, Write};
    let Ok(mut upstream) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else { return };
    let head =
        "POST /grpc HTTP/1.1\r\nHost: docker\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n";
    if upstream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        match upstream.read(&mut byte) {
            Ok(1) => response.push(byte[0]),
            _ => return,
        }
    }
    if !response.starts_with(b"HTTP/1.1 101") {
        return;
    }
    let Ok(mut to_upstream) = upstream.try_clone() else { return };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client, &mut to_upstream);
        let _ = to_upstream.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut back);
}

/// `--builder unix://` and `tcp://`: rbuild's buildkitd path (control API over a plain gRPC
/// connection, the session through its `Session` stream, the `docker` exporter) reaches
/// BuildKit and gets BuildKit's own answer: dockerd's BuildKit has no `docker` exporter, so it
/// refuses the solve before running anything (the steps and the image's way back through
/// `FileSend` need a real buildkitd; the `Session` stream itself is tested with dockerd above).
/// An unreachable socket and an unreadable TLS file are named.
#[test]
fn unix_and_tcp_builders_reach_buildkit() {
    if !ready() {
        return;
    }
    let _turn = super::buildkit_turn();
    let (dir, store, context) = store_and_context("FROM busybox\nCOPY Dockerfile /d\n");
    let ctx = context.to_string_lossy();
    let socket = dir.path().join("buildkitd.sock");
    let address = buildkitd_like_endpoints(&socket);
    let build = |url: &str| {
        let out = crate::fixture::rbuild(&store, &["build", "--builder", url, &ctx]);
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for url in [format!("unix://{}", socket.display()), format!("tcp://{address}")] {
        let (ok, stderr) = build(&url);
        assert!(!ok && stderr.contains("BuildKit failed to solve the build: exporter \"docker\""), "{url}: {stderr}");
    }
    let missing = format!("unix://{}", dir.path().join("none.sock").display());
    let (ok, stderr) = build(&missing);
    assert!(!ok && stderr.contains(&format!("cannot reach the builder at {missing}")), "{stderr}");
    let (ok, stderr) = build(&format!("tcp://{address}?cacert=/nonexistent/ca.pem"));
    assert!(!ok && stderr.contains("reading the CA certificate (cacert=) /nonexistent/ca.pem"), "{stderr}");
}

/// A TLS endpoint on 127.0.0.1 (the test CA's server certificate, ALPN h2) in front of
/// dockerd's `/grpc`, as a buildkitd with `--tlscert/--tlskey` is; returns its address.
fn buildkitd_like_tls_endpoint(ca: &crate::distribution::TestCa) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(ca.cert()).expect("cert").collect::<Result<_, _>>().expect("cert");
    let key = PrivateKeyDer::from_pem_file(ca.key()).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = std::sync::Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(tls) = rustls::ServerConnection::new(std::sync::Arc::clone(&config)) else { return };
            std::thread::spawn(move || relay_tls_to_dockerd_grpc(client, tls));
        }
    });
    address
}

/// Terminates TLS on `client` and relays the plaintext to dockerd's `/grpc`: one thread per
/// direction, the TLS state shared under a lock (never held across a blocking read).
fn relay_tls_to_dockerd_grpc(client: std::net::TcpStream, tls: rustls::ServerConnection) {
    use std::io::{Read, Write};
    let (Ok(mut client_in), Ok(client_out)) = (client.try_clone(), client.try_clone()) else { return };
    let tls = std::sync::Arc::new(std::sync::Mutex::new((tls, client_out)));
    let (plain_tx, plain_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader_tls = std::sync::Arc::clone(&tls);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = client_in.read(&mut buf) {
            let Ok(mut guard) = reader_tls.lock() else { return };
            let (conn, out) = &mut *guard;
            let mut incoming = &buf[..n];
            while !incoming.is_empty() {
                if conn.read_tls(&mut incoming).is_err() || conn.process_new_packets().is_err() {
                    return;
                }
                let mut plain = Vec::new();
                let _ = conn.reader().read_to_end(&mut plain);
                while conn.wants_write() && conn.write_tls(out).is_ok() {}
                if !plain.is_empty() && plain_tx.send(plain).is_err() {
                    return;
                }
            }
        }
    });
    struct Plain(std::sync::mpsc::Receiver<Vec<u8>>, std::io::Cursor<Vec<u8>>);
    impl Read for Plain {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.position() as usize >= self.1.get_ref().len() {
                match self.0.recv() {
                    Ok(next) => self.1 = std::io::Cursor::new(next),
                    Err(_) => return Ok(0),
                }
            }
            self.1.read(buf)
        }
    }
    struct Sealed(std::sync::Arc<std::sync::Mutex<(rustls::ServerConnection, std::net::TcpStream)>>);
    impl Write for Sealed {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let mut guard = self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            let (conn, out) = &mut *guard;
            conn.writer().write_all(data)?;
            while conn.wants_write() {
                conn.write_tls(out)?;
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    relay_to_dockerd_grpc(Plain(plain_rx, std::io::Cursor::new(Vec::new())), Sealed(tls));
}

/// `tcp://…?cacert=…&servername=…`: the control API and the session through TLS, the server
/// checked against the given CA (and refused without it).
#[test]
fn a_tcp_builder_speaks_tls_with_the_given_ca() {
    if !ready() || !crate::fixture::require(crate::fixture::have_tool("openssl"), "openssl") {
        return;
    }
    let _turn = super::buildkit_turn();
    let (_dir, store, context) = store_and_context("FROM busybox\nCOPY Dockerfile /d\n");
    let ca = crate::distribution::TestCa::new();
    let address = buildkitd_like_tls_endpoint(&ca);
    let ca_file = ca.dir.path().join("ca.crt");
    let build = |url: &str| {
        let out = crate::fixture::rbuild(&store, &["build", "--builder", url, &context.to_string_lossy()]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let trusted = build(&format!("tcp://{address}?cacert={}&servername=127.0.0.1", ca_file.display()));
    assert!(trusted.contains("BuildKit failed to solve the build: exporter \"docker\""), "{trusted}");
    let untrusted = build(&format!("tcp://{address}?cacert={}", ca.cert().display()));
    assert!(untrusted.contains(&format!("cannot reach the builder at tcp://{address}")), "{untrusted}");
}

/// Puts the host's `binary` and the shared libraries `ldd` names for it (the dynamic loader
/// too) under `root` at their own paths, so a busybox image with `root` copied in runs it.
fn put_with_libraries(root: &Path, binary: &Path) {
    let ldd = std::process::Command::new("ldd").arg(binary).output().expect("ldd");
    assert!(ldd.status.success(), "ldd {}", binary.display());
    let libraries = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/')).map(std::path::PathBuf::from))
        .collect::<Vec<_>>();
    assert!(libraries.iter().any(|l| l.to_string_lossy().contains("ld-linux")), "the loader: {libraries:?}");
    for file in libraries.iter().map(std::path::PathBuf::as_path).chain([binary]) {
        let target = root.join(file.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        // `copy` follows the host's symlinks (libc.so.6 -> the versioned file): the file itself.
        std::fs::copy(file, &target).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
}

/// `--ssh` with `--builder`: `RUN --mount=type=ssh` reaches a real ssh-agent through the
/// session (dockerd's `/session` and the control API's `Session` stream), so the host's own
/// `ssh-add -l` run inside the step lists the agent's key; only the listing lands in the image.
/// A required agent that was not given is named, and a key file is refused as for local builds.
#[test]
fn ssh_agents_are_forwarded_over_the_session() {
    use crate::fixture::{have_tool, require};
    let tools = ["ssh-agent", "ssh-keygen", "ssh-add", "ldd"].iter().all(|t| have_tool(t));
    if !ready() || !require(tools, "openssh-client and ldd") {
        return;
    }
    let _turn = super::buildkit_turn();
    let dockerfile = "FROM busybox\nCOPY root/ /\n\
        RUN --mount=type=ssh ssh-add -l > /keys\n\
        RUN --mount=type=ssh,id=deploy,target=/tmp/agent,required=true \
            test \"$SSH_AUTH_SOCK\" = /tmp/agent && ssh-add -l > /deploy-keys\n\
        RUN --mount=type=ssh ssh-add -D; echo $? > /remove-all\n";
    let (dir, store, context) = store_and_context(dockerfile);
    put_with_libraries(&context.join("root"), Path::new("/usr/bin/ssh-add"));
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).expect("mkdir");
    let agent = crate::fixture::SshAgentProcess::start(&agent_dir);
    let (default, deploy) =
        (format!("default={}", agent.socket.display()), format!("deploy={}", agent.socket.display()));
    let ctx = context.to_string_lossy();
    for (url, tag) in [("docker://", "ssh:1"), ("docker://?session=control", "ssh:2")] {
        crate::fixture::rbuild_ok(
            &store,
            &["build", "--builder", url, "--no-cache", "--ssh", &default, "--ssh", &deploy, "-t", tag, &ctx],
        );
        let read = |path: &str| crate::fixture::rbuild_ok(&store, &["run", "--rm", tag, "cat", path]);
        assert_eq!(read("/keys"), agent.fingerprint, "{url}: the step listed the agent's key");
        assert_eq!(read("/deploy-keys"), agent.fingerprint, "{url}: through the id deploy");
        // As buildx's read-only agent: a step may not remove the user's keys.
        assert_eq!(read("/remove-all"), "1\n", "{url}: ssh-add -D is refused");
        assert_eq!(crate::fixture::listed_keys(&agent.socket), agent.fingerprint, "{url}: the agent keeps its key");
        let inspect = crate::fixture::rbuild_ok(&store, &["inspect", tag]);
        assert!(!inspect.contains(&agent.socket.display().to_string()), "the host's socket stays out: {inspect}");
    }

    // A required id the build was not given: BuildKit asks the session, which names it.
    let missing = "FROM busybox\nRUN --mount=type=ssh,id=absent,required=true true\n";
    std::fs::write(context.join("Dockerfile"), missing).expect("write");
    for flags in [vec!["--ssh", default.as_str()], vec![]] {
        let mut args = vec!["build", "--builder", "docker://"];
        args.extend(&flags);
        args.push(&ctx);
        let out = crate::fixture::rbuild(&store, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?}: {stderr}");
        assert!(stderr.contains("step 2 (RUN --mount=type=ssh,id=absent,required=true true) failed"), "{stderr}");
        assert!(stderr.contains("\"absent\"") || stderr.contains("ssh agent absent"), "{flags:?}: {stderr}");
        if !flags.is_empty() {
            assert!(stderr.contains("pass it with --ssh absent=SOCKET"), "{stderr}");
        }
    }

    // A key file is not an agent: refused before anything is solved, as for a local build.
    let key = format!("default={}", agent_dir.join("id_ed25519").display());
    let out = crate::fixture::rbuild(&store, &["build", "--builder", "docker://", "--ssh", &key, &ctx]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is not an agent socket"), "{stderr}");
    assert!(!stderr.contains("Step 1/"), "nothing was solved: {stderr}");
}

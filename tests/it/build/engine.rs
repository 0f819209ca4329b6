//! The build engine through the library API (`rbuild::engine::Builder`), as root against a temp
//! store with a busybox base: cache assertions from a test, what each instruction writes into
//! the image config and rootfs, multi-stage parallelism and `--target`, and reproducible image
//! IDs with SOURCE_DATE_EPOCH.
//!
//! Needs root and /bin/busybox; skips with a message otherwise, fails under CI=true.

use std::collections::BTreeMap;
use std::path::Path;

use crate::fixture::Fixture;
use rbuild::engine::config::ImageConfigFile;
use rbuild::engine::{BuildOptions, Builder};
use rbuild::events::{BuildEvent, OutputStream};

impl Fixture {
    fn builder(&self) -> Builder {
        Builder::open(&self.root).expect("store")
    }

    fn config_file(&self, id: &str) -> ImageConfigFile {
        let store = rbuild::store::ImageStore::open(&self.root).expect("store");
        let image = store.resolve(id).expect("image");
        ImageConfigFile::from_json(&image.config_raw).expect("config")
    }
}

fn hits(events: &[BuildEvent]) -> usize {
    events.iter().filter(|e| matches!(e, BuildEvent::CacheHit { .. })).count()
}

#[test]
fn a_test_suite_can_assert_cache_hits() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context("lib", "FROM busybox\nENV A=1\nRUN echo hi > /hi\nCOPY f /f\n", &[("f", "x\n")]);
    let builder = fx.builder();
    let opts = BuildOptions::new(&ctx);
    let first = builder.build(&opts).expect("first build");
    assert_eq!(hits(&first.events), 0);
    let second = builder.build(&opts).expect("second build");
    assert_eq!(hits(&second.events), 3);
    assert_eq!(first.image_id, second.image_id);
    std::fs::write(ctx.join("f"), "y\n").expect("write");
    let third = builder.build(&opts).expect("third build");
    assert_eq!(hits(&third.events), 2, "ENV and RUN hit, COPY misses");
}

#[test]
fn config_instructions_land_in_the_image_config() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "config",
        "FROM busybox\nMAINTAINER Me <me@example.com>\nLABEL version=\"1.0\" \"com.example.x\"=y\nENV APP_HOME=/srv/app PATH=/opt/bin:$PATH\nEXPOSE 80 53/udp\nVOLUME /data\nUSER nobody\nWORKDIR $APP_HOME\nWORKDIR sub\nSTOPSIGNAL SIGQUIT\nHEALTHCHECK --interval=5s --retries=2 CMD [\"true\"]\nONBUILD RUN echo child\nSHELL [\"/bin/sh\", \"-ec\"]\nCMD echo $APP_HOME\nENTRYPOINT [\"/bin/sh\", \"-c\"]\nARG UNUSED\n",
        &[],
    );
    let mut opts = BuildOptions::new(&ctx);
    opts.labels = BTreeMap::from([("built.by".to_string(), "rbuild".to_string())]);
    let out = fx.builder().build(&opts).expect("build");
    let image = fx.config_file(&out.image_id);
    let c = &image.config;
    assert_eq!(image.author.as_deref(), Some("Me <me@example.com>"));
    assert_eq!(c.labels.get("version").map(String::as_str), Some("1.0"));
    assert_eq!(c.labels.get("com.example.x").map(String::as_str), Some("y"));
    assert_eq!(c.labels.get("built.by").map(String::as_str), Some("rbuild"));
    assert_eq!(image.env_var("APP_HOME"), Some("/srv/app"));
    assert!(image.env_var("PATH").is_some_and(|p| p.starts_with("/opt/bin:/usr/local/sbin")), "{:?}", c.env);
    assert!(c.exposed_ports.contains_key("80/tcp") && c.exposed_ports.contains_key("53/udp"));
    assert!(c.volumes.contains_key("/data"));
    assert_eq!(c.user, "nobody");
    assert_eq!(c.working_dir, "/srv/app/sub");
    assert_eq!(c.stop_signal, "SIGQUIT");
    let hc = c.healthcheck.clone().expect("healthcheck");
    assert_eq!(
        (hc.test.clone(), hc.interval, hc.retries),
        (vec!["CMD".to_string(), "true".to_string()], 5_000_000_000, 2)
    );
    assert_eq!(c.on_build, ["RUN echo child"]);
    assert_eq!(c.shell, ["/bin/sh", "-ec"]);
    assert_eq!(
        c.cmd,
        Some(vec!["/bin/sh".into(), "-ec".into(), "echo $APP_HOME".into()]),
        "CMD set here survives ENTRYPOINT"
    );
    assert_eq!(c.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
    // Config-only steps add history but no layer; the two WORKDIRs make their directories.
    let empty = image.history.iter().filter(|h| h.empty_layer).count();
    assert_eq!(empty, 13, "{:#?}", image.history);
    assert_eq!(image.rootfs.diff_ids.len(), 3, "busybox's layer and one per WORKDIR");
}

#[test]
fn run_and_copy_write_the_rootfs() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "fs",
        "FROM busybox AS build\nRUN mkdir -p /out && echo built > /out/artifact && rm -rf /root\nARG V=7\nRUN echo $V > /out/v\nFROM busybox\nRUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group\nWORKDIR /srv\nCOPY --chown=app:app --chmod=640 conf/ cfg/\nCOPY --from=build /out/artifact /out/v ./\nCOPY top.txt /top/\nRUN rm /bin/vi\n",
        &[("conf/a.conf", "a\n"), ("conf/nested/b.conf", "b\n"), ("top.txt", "top\n")],
    );
    let out = fx.builder().build(&BuildOptions::new(&ctx)).expect("build");
    let root = fx.rootfs(&out.image_id);
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(root.join("srv/cfg/a.conf")).expect("a.conf");
    assert_eq!((a.uid(), a.gid(), a.mode() & 0o777), (1000, 1000, 0o640));
    assert!(root.join("srv/cfg/nested/b.conf").is_file());
    assert_eq!(std::fs::read_to_string(root.join("srv/artifact")).expect("artifact"), "built\n");
    assert_eq!(std::fs::read_to_string(root.join("srv/v")).expect("v"), "7\n");
    assert_eq!(std::fs::read_to_string(root.join("top/top.txt")).expect("top"), "top\n");
    assert!(!root.join("bin/vi").exists(), "a file deleted by RUN is gone (whiteout applied)");
    assert!(root.join("root").exists(), "the build stage's rm does not touch the final stage");
}

#[test]
fn independent_stages_run_in_parallel_and_target_prunes() {
    let Some(fx) = Fixture::new() else { return };
    let text = "FROM busybox AS one\nRUN cut -d' ' -f1 /proc/uptime > /start; sleep 2; cut -d' ' -f1 /proc/uptime > /end\nFROM busybox AS two\nRUN cut -d' ' -f1 /proc/uptime > /start; sleep 2; cut -d' ' -f1 /proc/uptime > /end\nFROM busybox AS unused\nRUN echo never\nFROM busybox\nCOPY --from=one /start /one-start\nCOPY --from=one /end /one-end\nCOPY --from=two /start /two-start\nCOPY --from=two /end /two-end\n";
    let ctx = fx.context("multi", text, &[]);
    let out = fx.builder().build(&BuildOptions::new(&ctx)).expect("build");
    let root = fx.rootfs(&out.image_id);
    let read =
        |name: &str| -> f64 { std::fs::read_to_string(root.join(name)).expect(name).trim().parse().expect("a time") };
    // The two sleeps overlap: each started before the other ended.
    assert!(
        read("one-start") < read("two-end") && read("two-start") < read("one-end"),
        "stages ran one after the other"
    );
    let ran_unused = out.events.iter().any(|e| matches!(e, BuildEvent::Output { line, .. } if line == "never"));
    assert!(!ran_unused, "a stage the target does not need is skipped");

    let mut only_one = BuildOptions::new(&ctx);
    only_one.target = Some("one".into());
    let out = fx.builder().build(&only_one).expect("build");
    let started: Vec<usize> = out
        .events
        .iter()
        .filter_map(|e| if let BuildEvent::StepStarted { stage, .. } = e { Some(*stage) } else { None })
        .collect();
    assert!(started.iter().all(|s| *s == 0), "only stage 0 runs: {started:?}");
}

#[test]
fn run_output_is_streamed_as_events() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context("out", "FROM busybox\nRUN echo to-out; echo to-err >&2\n", &[]);
    let out = fx.builder().build(&BuildOptions::new(&ctx)).expect("build");
    let lines: Vec<(OutputStream, String)> = out
        .events
        .iter()
        .filter_map(
            |e| if let BuildEvent::Output { stream, line, .. } = e { Some((*stream, line.clone())) } else { None },
        )
        .collect();
    assert!(lines.contains(&(OutputStream::Stdout, "to-out".into())), "{lines:?}");
    assert!(lines.contains(&(OutputStream::Stderr, "to-err".into())), "{lines:?}");
}

#[test]
fn source_date_epoch_makes_image_ids_reproducible() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "repro",
        "FROM busybox\nENV A=1\nRUN echo hello > /hello && touch /stamp\nCOPY f /f\n",
        &[("f", "x\n")],
    );
    let build_in = |store: &Path| -> String {
        let status = std::process::Command::new("cp").arg("-a").arg(&fx.root).arg(store).status().expect("cp");
        assert!(status.success());
        let output = crate::fixture::rbuild_command()
            .env("RBUILD_ROOT", store)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-q", ctx.to_str().expect("utf8")])
            .output()
            .expect("rbuild");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    // Two fresh copies of the store that holds only the base image.
    let a = build_in(&fx.dir.path().join("store-a"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build_in(&fx.dir.path().join("store-b"));
    assert!(a.starts_with("sha256:"), "{a}");
    assert_eq!(a, b);
}

#[test]
fn heredocs_archives_parents_and_onbuild() {
    let Some(fx) = Fixture::new() else { return };
    // A gzipped tar in the context, made with the system tar.
    let ctx = fx.context(
        "more",
        "FROM busybox\nARG WHO=world\nCOPY <<EOF /etc/greeting\nhello $WHO \"quoted\"\nEOF\nCOPY <<'RAW' /etc/raw\nkeep $WHO\nRAW\nRUN <<EOF\nset -e\necho from-heredoc > /ran\nEOF\nADD bundle.tar.gz /opt/\nADD --chown=1000:1000 bundle.tar.gz /owned/\nCOPY --parents src/a/one.txt src/b/two.txt /tree/\nONBUILD RUN echo triggered > /onbuild\nONBUILD COPY src/a/one.txt /from-trigger\n",
        &[("src/a/one.txt", "1\n"), ("src/b/two.txt", "2\n")],
    );
    let payload = fx.dir.path().join("payload");
    std::fs::create_dir_all(payload.join("pkg/bin")).expect("mkdir");
    std::fs::write(payload.join("pkg/bin/tool"), "#!/bin/sh\n").expect("write");
    let status = std::process::Command::new("tar")
        .args(["-czf"])
        .arg(ctx.join("bundle.tar.gz"))
        .args(["--owner=7", "--group=8", "-C"])
        .arg(&payload)
        .arg("pkg")
        .status()
        .expect("tar");
    assert!(status.success());
    let mut opts = BuildOptions::new(&ctx);
    opts.tags = vec!["parent:1".into()];
    let parent = fx.builder().build(&opts).expect("build");
    let root = fx.rootfs(&parent.image_id);
    assert_eq!(std::fs::read_to_string(root.join("etc/greeting")).expect("greeting"), "hello world \"quoted\"\n");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/raw")).expect("raw"),
        "keep $WHO\n",
        "a quoted delimiter does not expand"
    );
    assert_eq!(std::fs::read_to_string(root.join("ran")).expect("ran"), "from-heredoc\n");
    use std::os::unix::fs::MetadataExt;
    let tool = std::fs::metadata(root.join("opt/pkg/bin/tool")).expect("extracted");
    assert_eq!((tool.uid(), tool.gid()), (7, 8), "ADD keeps the archive's owners");
    let owned = std::fs::metadata(root.join("owned/pkg/bin/tool")).expect("extracted");
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000));
    assert!(!root.join("opt/bundle.tar.gz").exists());
    assert!(root.join("tree/src/a/one.txt").is_file() && root.join("tree/src/b/two.txt").is_file());
    assert!(!root.join("onbuild").exists(), "ONBUILD runs in the child, not here");
    assert_eq!(fx.config_file(&parent.image_id).config.on_build.len(), 2);

    // A child build FROM the parent runs its triggers first and does not carry them on.
    let child_ctx = fx.context("child", "FROM parent:1\nRUN test -f /onbuild\n", &[("src/a/one.txt", "child\n")]);
    let child = fx.builder().build(&BuildOptions::new(&child_ctx)).expect("child build");
    let child_root = fx.rootfs(&child.image_id);
    assert_eq!(std::fs::read_to_string(child_root.join("onbuild")).expect("trigger ran"), "triggered\n");
    assert_eq!(std::fs::read_to_string(child_root.join("from-trigger")).expect("trigger copy"), "child\n");
    assert!(fx.config_file(&child.image_id).config.on_build.is_empty());
}

/// A static HTTP server on 127.0.0.1 serving `dir` (python3's http.server), killed on drop.
struct LocalHttp(std::process::Child, u16);

impl LocalHttp {
    fn serve(dir: &Path) -> Option<LocalHttp> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(LocalHttp(child, port));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for LocalHttp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn add_fetches_urls_and_checks_the_checksum() {
    let Some(fx) = Fixture::new() else { return };
    let site = fx.dir.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("tool.sh"), "echo fetched\n").expect("write");
    let server = LocalHttp::serve(&site);
    if !crate::fixture::require(server.is_some(), "python3 to serve files on 127.0.0.1") {
        return;
    }
    let port = server.as_ref().map_or(0, |s| s.1);
    use sha2::Digest;
    let sum = format!("sha256:{}", hex::encode(sha2::Sha256::digest(b"echo fetched\n")));
    let ctx = fx.context(
        "url",
        &format!("FROM busybox\nADD --checksum={sum} http://127.0.0.1:{port}/tool.sh /opt/\nADD http://127.0.0.1:{port}/tool.sh /renamed.sh\n"),
        &[],
    );
    let out = fx.builder().build(&BuildOptions::new(&ctx)).expect("build");
    let root = fx.rootfs(&out.image_id);
    use std::os::unix::fs::MetadataExt;
    let tool = std::fs::metadata(root.join("opt/tool.sh")).expect("fetched");
    assert_eq!(tool.mode() & 0o777, 0o600, "ADD <url> files are 0600, as docker makes them");
    assert_eq!(std::fs::read_to_string(root.join("renamed.sh")).expect("renamed"), "echo fetched\n");

    let bad = fx.context(
        "badsum",
        &format!("FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/tool.sh /x\n", "0".repeat(64)),
        &[],
    );
    let err = fx.builder().build(&BuildOptions::new(&bad)).expect_err("checksum mismatch");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let copy = fx.context("copyurl", &format!("FROM busybox\nCOPY http://127.0.0.1:{port}/tool.sh /x\n"), &[]);
    let err = fx.builder().build(&BuildOptions::new(&copy)).expect_err("COPY of a URL");
    assert!(err.to_string().contains("COPY cannot copy from a URL"), "{err}");
}

#[test]
fn a_cached_cmd_survives_a_changed_entrypoint() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context("cmdep", "FROM busybox\nCMD [\"--help\"]\nENTRYPOINT [\"/bin/echo\"]\n", &[]);
    fx.builder().build(&BuildOptions::new(&ctx)).expect("first build");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCMD [\"--help\"]\nENTRYPOINT [\"/bin/printf\"]\n")
        .expect("write");
    let out = fx.builder().build(&BuildOptions::new(&ctx)).expect("second build");
    assert_eq!(hits(&out.events), 1, "CMD comes from the cache");
    let config = fx.config_file(&out.image_id).config;
    assert_eq!(config.cmd, Some(vec!["--help".to_string()]), "a CMD set in this stage survives ENTRYPOINT");
    assert_eq!(config.entrypoint, Some(vec!["/bin/printf".to_string()]));
}

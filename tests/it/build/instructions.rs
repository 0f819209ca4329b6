//! One test per Dockerfile instruction family, asserting the exact image config (Docker's JSON
//! field names, read from the stored config blob) and rootfs a build produces, as the
//! Dockerfile reference and BuildKit (`docker build`'s default builder) produce them.
//! tests/build_engine.rs covers the basics of each instruction; this file pins the corners:
//! forms, flags, defaults and what a step must not do.
//!
//! Needs root and /bin/busybox; skips with a message otherwise, fails under CI=true.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::fixture::Fixture;
use rbuild::engine::{BuildError, BuildOptions, Builder};
use serde_json::{json, Value};

impl Fixture {
    fn build(&self, ctx: &Path) -> String {
        self.build_with(&BuildOptions::new(ctx))
    }

    fn build_with(&self, opts: &BuildOptions) -> String {
        let builder = Builder::open(&self.root).expect("store");
        match builder.build(opts) {
            Ok(out) => out.image_id,
            Err(e) => panic!("build of {} failed: {e}", opts.context.display()),
        }
    }

    fn build_err(&self, ctx: &Path) -> BuildError {
        let builder = Builder::open(&self.root).expect("store");
        builder.build(&BuildOptions::new(ctx)).expect_err("the build should fail")
    }

    /// The image config exactly as stored (the blob whose digest is the image ID).
    fn config(&self, id: &str) -> Value {
        let store = rbuild::store::ImageStore::open(&self.root).expect("store");
        let image = store.resolve(id).expect("image");
        serde_json::from_slice(&image.config_raw).expect("config JSON")
    }
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (uid, gid, permission bits) of a path, not following a final symlink.
fn owner_mode(root: &Path, path: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// `history[].empty_layer` of the steps after the base image's own history.
fn empty_layers(config: &Value, base_entries: usize) -> Vec<bool> {
    config["history"].as_array().expect("history").iter().skip(base_entries).map(|h| h["empty_layer"] == true).collect()
}

fn diff_ids(config: &Value) -> usize {
    config["rootfs"]["diff_ids"].as_array().expect("diff_ids").len()
}

fn base_history(fx: &Fixture) -> usize {
    fx.config("busybox")["history"].as_array().map_or(0, Vec::len)
}

#[test]
fn from_an_image_scratch_a_stage_and_platforms() {
    let Some(fx) = Fixture::new() else { return };
    // A missing base image: the error names it.
    let missing = fx.context("missing", "FROM no-such-image:1.2\nRUN true\n", &[]);
    let err = fx.build_err(&missing).to_string();
    assert!(err.contains("no-such-image:1.2"), "{err}");

    // ARG before FROM picks the base; FROM an earlier stage inherits its config and files;
    // FROM scratch starts with no layer, Docker's default PATH and nothing else.
    let native = rbuild::frontend::lower::Platform::native().to_string();
    let ctx = fx.context(
        "stages",
        &format!("ARG BASE=busybox\nFROM --platform={native} $BASE AS base\nENV FROM_BASE=1\nRUN echo base > /base\nFROM base AS child\nRUN echo child > /child\nFROM scratch AS empty\nCOPY f /f\nFROM --platform=$BUILDPLATFORM base AS last\n"),
        &[("f", "scratch file\n")],
    );
    let mut opts = BuildOptions::new(&ctx);
    opts.target = Some("child".into());
    let child = fx.build_with(&opts);
    let root = fx.rootfs(&child);
    assert_eq!((read(&root, "base"), read(&root, "child")), ("base\n".into(), "child\n".into()));
    let config = fx.config(&child);
    assert!(config["config"]["Env"].as_array().expect("Env").contains(&json!("FROM_BASE=1")), "{config}");
    assert_eq!(diff_ids(&config), 3, "busybox + RUN + RUN");

    opts.target = Some("empty".into());
    let scratch = fx.build_with(&opts);
    let config = fx.config(&scratch);
    assert_eq!(diff_ids(&config), 1, "only the COPY's layer");
    assert_eq!(config["config"]["Env"], json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]));
    let listing = crate::fixture::tree_listing(&fx.rootfs(&scratch));
    assert_eq!(listing.len(), 1, "{listing:?}");
    assert!(listing[0].starts_with("f file "), "{listing:?}");

    opts.target = None;
    fx.build_with(&opts);

    // A foreign --platform cannot run here: a clear error naming the platform, not a build
    // that silently uses the native image.
    let foreign = if cfg!(target_arch = "s390x") { "linux/amd64" } else { "linux/s390x" };
    let ctx = fx.context("foreign", &format!("FROM --platform={foreign} busybox\nRUN true\n"), &[]);
    let err = fx.build_err(&ctx).to_string();
    assert!(err.contains(foreign), "{err}");
}

#[test]
fn run_shell_form_exec_form_and_shell() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "run",
        "FROM busybox\nENV X=1\nRUN echo \"shell $X $0\" > /shell\nRUN [\"/bin/touch\", \"/exec-$X\"]\nSHELL [\"/usr/bin/env\", \"VIA_SHELL=yes\", \"/bin/sh\", \"-c\"]\nRUN echo \"$VIA_SHELL\" > /shelled\nRUN [\"/bin/sh\", \"-c\", \"echo ${VIA_SHELL:-unset} > /exec-no-shell\"]\n",
        &[],
    );
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    assert_eq!(read(&root, "shell"), "shell 1 /bin/sh\n", "shell form runs through /bin/sh -c");
    assert!(root.join("exec-$X").is_file(), "exec form does no variable substitution");
    assert_eq!(read(&root, "shelled"), "yes\n", "SHELL wraps later shell-form RUNs");
    assert_eq!(read(&root, "exec-no-shell"), "unset\n", "SHELL does not touch exec form");
    let config = fx.config(&id);
    assert_eq!(config["config"]["Shell"], json!(["/usr/bin/env", "VIA_SHELL=yes", "/bin/sh", "-c"]));
    let created_by: Vec<&str> =
        config["history"].as_array().expect("history").iter().filter_map(|h| h["created_by"].as_str()).collect();
    assert!(
        created_by.contains(&"/usr/bin/env VIA_SHELL=yes /bin/sh -c echo \"$VIA_SHELL\" > /shelled"),
        "{created_by:?}"
    );
    assert_eq!(
        empty_layers(&config, base_history(&fx)),
        [true, false, false, true, false, false],
        "ENV and SHELL add no layer; each RUN that writes adds one"
    );
}

#[test]
fn a_heredoc_with_a_shebang_runs_under_its_interpreter() {
    // BuildKit: a sole `RUN <<EOF` whose body starts with `#!` is run as a program, so the
    // kernel starts the named interpreter (here busybox awk); without one, /bin/sh runs it.
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "shebang",
        "FROM busybox\nRUN <<EOF\n#!/usr/bin/awk -f\nBEGIN { print \"awk says \" 6*7 > \"/by-awk\" }\nEOF\nRUN <<EOF\necho \"sh says $0\" > /by-sh\nEOF\nRUN <<-EOF\n\t#!/bin/sh\n\techo \"chomped $0\" > /chomped\n\tEOF\n",
        &[],
    );
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    assert_eq!(read(&root, "by-awk"), "awk says 42\n");
    assert_eq!(read(&root, "by-sh"), "sh says /bin/sh\n");
    assert_eq!(read(&root, "chomped"), "chomped /dev/pipes/EOF\n", "the script file is the program");
    assert!(!root.join("dev/pipes").exists(), "the script never reaches the image");
}

#[test]
fn env_forms_and_expansion() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "env",
        "FROM busybox\nENV LEGACY a value with spaces\nENV A=1 B=\"two words\" C=$A\nENV A=3 D=${A}-${B}\nENV E=\"$A\" F='$A'\nRUN echo \"$D|$E|$F\" > /seen\n",
        &[],
    );
    let id = fx.build(&ctx);
    let config = fx.config(&id);
    assert_eq!(
        config["config"]["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LEGACY=a value with spaces",
            "A=3",
            "B=two words",
            "C=",
            "D=1-two words",
            "E=3",
            "F=$A"
        ]),
        "a line sees the values from before it; a replaced variable keeps its place"
    );
    assert_eq!(read(&fx.rootfs(&id), "seen"), "1-two words|3|$A\n");
}

#[test]
fn arg_defaults_overrides_scope_and_proxies() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "args",
        "ARG GLOBAL=g\nFROM busybox\nARG V=default\nARG EMPTY\nRUN echo \"[$GLOBAL][$V][$EMPTY][${HTTP_PROXY:-}]\" > /one\nARG GLOBAL\nRUN echo \"[$GLOBAL]\" > /two\n",
        &[],
    );
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    // The host's proxy variables reach RUN (as the docker CLI passes its configured proxies).
    let host_proxy = std::env::var("HTTP_PROXY").unwrap_or_default();
    assert_eq!(
        read(&root, "one"),
        format!("[][default][][{host_proxy}]\n"),
        "a global ARG is not visible until redeclared"
    );
    assert_eq!(read(&root, "two"), "[g]\n");
    let config = fx.config(&id);
    assert!(!config["config"]["Env"].to_string().contains("default"), "ARG values stay out of Env: {config}");

    let mut opts = BuildOptions::new(&ctx);
    opts.build_args = BTreeMap::from([
        ("V".to_string(), "override".to_string()),
        ("GLOBAL".to_string(), "G2".to_string()),
        ("HTTP_PROXY".to_string(), "http://proxy.invalid:3128".to_string()),
    ]);
    let id = fx.build_with(&opts);
    let root = fx.rootfs(&id);
    assert_eq!(read(&root, "one"), "[][override][][http://proxy.invalid:3128]\n", "a proxy arg needs no ARG");
    assert_eq!(read(&root, "two"), "[G2]\n");
    let history = fx.config(&id)["history"].to_string();
    assert!(history.contains("V=override"), "RUN history names the build args it saw: {history}");
    assert!(!history.contains("proxy.invalid"), "proxy args stay out of the history: {history}");
}

#[test]
fn label_and_maintainer() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "label",
        "FROM busybox\nARG REV=abc\nMAINTAINER Jane Doe <jane@example.com>\nLABEL a=1 \"b c\"=\"two words\" d='single $REV' e=\"double $REV\"\nLABEL multi.line=\"one \\\ntwo\"\nLABEL a=override\n",
        &[],
    );
    let id = fx.build(&ctx);
    let config = fx.config(&id);
    assert_eq!(config["author"], "Jane Doe <jane@example.com>");
    assert_eq!(
        config["config"]["Labels"],
        json!({"a": "override", "b c": "two words", "d": "single $REV", "e": "double abc", "multi.line": "one two"})
    );
}

#[test]
fn expose_volume_user_stopsignal() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "misc",
        "FROM busybox\nARG PORT=9090\nEXPOSE 80 80/udp 8000-8002 ${PORT}/tcp 53/UDP\nVOLUME [\"/json-a\", \"/json b\"]\nVOLUME /plain1 /plain2\nUSER 1000:1000\nSTOPSIGNAL SIGKILL\n",
        &[],
    );
    let id = fx.build(&ctx);
    let config = fx.config(&id);
    let c = &config["config"];
    assert_eq!(
        c["ExposedPorts"],
        json!({"80/tcp": {}, "80/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}, "9090/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], json!({"/json-a": {}, "/json b": {}, "/plain1": {}, "/plain2": {}}));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["StopSignal"], "SIGKILL");
    assert_eq!(empty_layers(&config, base_history(&fx)), [true; 6]);
    assert_eq!(diff_ids(&config), 1);
    // A VOLUME path is not created in the rootfs by BuildKit.
    assert!(!fx.rootfs(&id).join("plain1").exists());
}

#[test]
fn cmd_and_entrypoint_forms_and_inheritance() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "cmd",
        "FROM busybox AS base\nCMD [\"base-cmd\"]\nFROM base AS shellform\nCMD echo $HOME\nENTRYPOINT exec top -b\nFROM base AS inherits\nLABEL x=y\nFROM base AS reset\nENTRYPOINT [\"/bin/echo\"]\nFROM base AS both\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"later\"]\n",
        &[],
    );
    let config_of = |target: &str| {
        let mut opts = BuildOptions::new(&ctx);
        opts.target = Some(target.to_string());
        fx.config(&fx.build_with(&opts))["config"].clone()
    };
    let c = config_of("shellform");
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo $HOME"]), "a CMD of this stage survives ENTRYPOINT");
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "exec top -b"]));
    let c = config_of("inherits");
    assert_eq!(c["Cmd"], json!(["base-cmd"]));
    let c = config_of("reset");
    assert_eq!((c["Entrypoint"].clone(), c["Cmd"].clone()), (json!(["/bin/echo"]), Value::Null), "inherited CMD reset");
    let c = config_of("both");
    assert_eq!((c["Entrypoint"].clone(), c["Cmd"].clone()), (json!(["/bin/echo"]), json!(["later"])));
}

#[test]
fn workdir_is_created_owned_by_user_and_stacks() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "workdir",
        "FROM busybox\nRUN mkdir -p /run /var && ln -s ../run /var/run\nWORKDIR /tmp\nUSER nobody\nWORKDIR /srv/app\nWORKDIR sub/../data\nUSER 12:34\nWORKDIR /numeric\nRUN pwd > /tmp/pwd\nWORKDIR /tmp/sub\nWORKDIR /var/run/app\n",
        &[],
    );
    let id = fx.build(&ctx);
    let config = fx.config(&id);
    assert_eq!(config["config"]["WorkingDir"], "/var/run/app");
    let root = fx.rootfs(&id);
    assert_eq!(read(&root, "tmp/pwd"), "/numeric\n");
    // BuildKit makes the directory (and missing parents) 0755, owned by the USER in effect.
    assert_eq!(owner_mode(&root, "srv"), (65534, 65534, 0o755));
    assert_eq!(owner_mode(&root, "srv/app"), (65534, 65534, 0o755));
    assert_eq!(owner_mode(&root, "srv/app/data"), (65534, 65534, 0o755));
    assert!(!root.join("srv/app/sub").exists(), "`..` is resolved before the directory is made");
    assert_eq!(owner_mode(&root, "numeric"), (12, 34, 0o755));
    assert_eq!(owner_mode(&root, "tmp"), (0, 0, 0o1777), "an existing directory is left alone");
    assert_eq!(owner_mode(&root, "tmp/sub"), (12, 34, 0o755));
    assert!(std::fs::symlink_metadata(root.join("var/run")).expect("var/run").is_symlink(), "a parent symlink is kept");
    assert_eq!(owner_mode(&root, "run/app"), (12, 34, 0o755), "made through the parent symlink");
    assert_eq!(
        empty_layers(&config, base_history(&fx)),
        [false, true, true, false, false, true, false, false, false, false],
        "a WORKDIR that makes a directory adds a layer"
    );
}

#[test]
fn healthcheck_forms_and_durations() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "health",
        "FROM busybox AS exec\nHEALTHCHECK --interval=1m30s --timeout=5s --start-period=2s --start-interval=500ms --retries=4 CMD [\"/bin/true\", \"arg\"]\nFROM busybox AS shell\nHEALTHCHECK CMD wget -q -O- http://localhost/ || exit 1\nFROM shell AS none\nHEALTHCHECK NONE\n",
        &[],
    );
    let health_of = |target: &str| {
        let mut opts = BuildOptions::new(&ctx);
        opts.target = Some(target.to_string());
        fx.config(&fx.build_with(&opts))["config"]["Healthcheck"].clone()
    };
    assert_eq!(
        health_of("exec"),
        json!({
            "Test": ["CMD", "/bin/true", "arg"],
            "Interval": 90_000_000_000u64,
            "Timeout": 5_000_000_000u64,
            "StartPeriod": 2_000_000_000u64,
            "StartInterval": 500_000_000u64,
            "Retries": 4
        })
    );
    assert_eq!(health_of("shell"), json!({"Test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"]}));
    assert_eq!(health_of("none"), json!({"Test": ["NONE"]}));
}

#[test]
fn onbuild_triggers_are_stored_verbatim_and_run_in_the_child() {
    let Some(fx) = Fixture::new() else { return };
    let parent = fx.context(
        "onbuild-parent",
        "FROM busybox\nARG WHO=parent\nONBUILD ARG WHO=child\nONBUILD RUN echo \"hello $WHO\" > /greeting\n",
        &[],
    );
    let mut opts = BuildOptions::new(&parent);
    opts.tags = vec!["onbuild-parent:1".into()];
    let id = fx.build_with(&opts);
    let config = fx.config(&id);
    assert_eq!(config["config"]["OnBuild"], json!(["ARG WHO=child", "RUN echo \"hello $WHO\" > /greeting"]));
    assert!(!fx.rootfs(&id).join("greeting").exists());
    let child = fx.context("onbuild-child", "FROM onbuild-parent:1\n", &[]);
    let id = fx.build(&child);
    assert_eq!(read(&fx.rootfs(&id), "greeting"), "hello child\n");
    assert_eq!(fx.config(&id)["config"]["OnBuild"], Value::Null, "triggers do not pass to grandchildren");
}

/// A tar of a one-file tree (`pkg/file` holding `content`), compressed by the system tar's
/// `flag` (`-z`, `-j`, `-J`; empty for none).
fn archive(fx: &Fixture, ctx: &Path, name: &str, flag: &str, content: &str) {
    let payload = fx.dir.path().join(format!("payload-{name}"));
    std::fs::create_dir_all(payload.join("pkg")).expect("mkdir");
    std::fs::write(payload.join("pkg/file"), content).expect("write");
    let mut cmd = std::process::Command::new("tar");
    if !flag.is_empty() {
        cmd.arg(flag);
    }
    let status = cmd.arg("-cf").arg(ctx.join(name)).arg("-C").arg(&payload).arg("pkg").status().expect("tar");
    assert!(status.success(), "tar {flag} for {name}");
}

#[test]
fn add_extracts_every_archive_format_the_reference_lists() {
    let Some(fx) = Fixture::new() else { return };
    let have = |tool: &str| crate::fixture::have_tool(tool);
    if !crate::fixture::require(
        have("bzip2") && have("xz") && have("gzip"),
        "bzip2, xz and gzip (to make test archives)",
    ) {
        return;
    }
    let ctx = fx.context(
        "add",
        "FROM busybox\nADD plain.tar /plain/\nADD gz.tar.gz /gz/\nADD bz.tar.bz2 /bz/\nADD xz.tar.xz /xz/\nADD notatar.gz /copied/\nCOPY plain.tar /kept/\n",
        &[],
    );
    archive(&fx, &ctx, "plain.tar", "", "plain\n");
    archive(&fx, &ctx, "gz.tar.gz", "-z", "gzip\n");
    archive(&fx, &ctx, "bz.tar.bz2", "-j", "bzip2\n");
    archive(&fx, &ctx, "xz.tar.xz", "-J", "xz\n");
    std::fs::write(ctx.join("notatar.gz"), "not an archive\n").expect("write");
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    assert_eq!(read(&root, "plain/pkg/file"), "plain\n");
    assert_eq!(read(&root, "gz/pkg/file"), "gzip\n");
    assert_eq!(read(&root, "bz/pkg/file"), "bzip2\n");
    assert_eq!(read(&root, "xz/pkg/file"), "xz\n");
    assert_eq!(read(&root, "copied/notatar.gz"), "not an archive\n", "a file that is no archive is copied");
    assert!(root.join("kept/plain.tar").is_file(), "COPY never extracts");
}

#[test]
fn copy_sources_destinations_and_flags() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "copy",
        "FROM busybox\nWORKDIR /app\nCOPY *.txt notes/\nCOPY dir /flat\nCOPY dir/sub/deep.txt renamed.txt\nCOPY one.txt /etc\nCOPY --chown=nobody one.txt /owned-by-name\nCOPY --chown=12:34 --chmod=751 one.txt /owned-by-id\nCOPY --exclude=*.md dir /filtered/\nCOPY --link dir/sub /linked/\nCOPY --from=busybox /etc/group /from-image\n",
        &[("one.txt", "1\n"), ("two.txt", "2\n"), ("dir/a.md", "a\n"), ("dir/b.txt", "b\n"), ("dir/sub/deep.txt", "deep\n")],
    );
    std::os::unix::fs::symlink("b.txt", ctx.join("dir/inner-link")).expect("symlink");
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    // Wildcards into a directory relative to WORKDIR.
    assert_eq!((read(&root, "app/notes/one.txt"), read(&root, "app/notes/two.txt")), ("1\n".into(), "2\n".into()));
    // A directory source copies its contents, not itself; a symlink inside it stays one.
    assert_eq!(read(&root, "flat/b.txt"), "b\n");
    assert_eq!(read(&root, "flat/sub/deep.txt"), "deep\n");
    assert!(!root.join("flat/dir").exists());
    assert_eq!(std::fs::read_link(root.join("flat/inner-link")).expect("a symlink"), Path::new("b.txt"));
    // A destination without a trailing slash names the file...
    assert_eq!(read(&root, "app/renamed.txt"), "deep\n");
    // ...unless it is a directory already.
    assert_eq!(read(&root, "etc/one.txt"), "1\n");
    assert_eq!(owner_mode(&root, "owned-by-name"), (65534, 65534, 0o644), "a user name takes its primary group");
    assert_eq!(owner_mode(&root, "owned-by-id"), (12, 34, 0o751));
    assert!(root.join("filtered/b.txt").is_file() && !root.join("filtered/a.md").exists(), "--exclude");
    assert_eq!(read(&root, "linked/deep.txt"), "deep\n", "--link copies like COPY");
    assert_eq!(read(&root, "from-image"), read(&root, "etc/group"));
    // Directories COPY creates are root's, 0755.
    assert_eq!(owner_mode(&root, "app/notes"), (0, 0, 0o755));
}

#[test]
fn copy_follows_a_source_that_is_a_symlink() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "copylink",
        "FROM busybox\nCOPY link /link\nCOPY dirlink /fromdir/\nCOPY link dirlink/ /both/\n",
        &[("one.txt", "1\n"), ("dir/inner.txt", "inner\n")],
    );
    std::os::unix::fs::symlink("one.txt", ctx.join("link")).expect("symlink");
    // A chain, absolute from the context root: dirlink -> /dir2 -> dir.
    std::os::unix::fs::symlink("/dir2", ctx.join("dirlink")).expect("symlink");
    std::os::unix::fs::symlink("dir", ctx.join("dir2")).expect("symlink");
    let first = fx.build(&ctx);
    let root = fx.rootfs(&first);
    // BuildKit copies with FollowSymlinks: the named source is resolved in the context and
    // copied under the link's name; a link to a directory copies the directory's contents.
    assert!(!std::fs::symlink_metadata(root.join("link")).expect("link").is_symlink(), "copied as a symlink");
    assert_eq!(read(&root, "link"), "1\n");
    assert_eq!(read(&root, "fromdir/inner.txt"), "inner\n");
    assert_eq!(read(&root, "both/link"), "1\n");
    assert_eq!(read(&root, "both/inner.txt"), "inner\n");
    // The target's content is part of the cache key.
    std::fs::write(ctx.join("one.txt"), "2\n").expect("edit the link's target");
    let second = fx.build(&ctx);
    assert_ne!(second, first, "an edited link target must miss the cache");
    assert_eq!(read(&fx.rootfs(&second), "link"), "2\n");
    // A link that leads out of the context is not followed out of it.
    std::fs::remove_file(ctx.join("link")).expect("rm");
    std::os::unix::fs::symlink("../../../../../../etc/passwd", ctx.join("link")).expect("symlink");
    let err = fx.build_err(&ctx).to_string();
    assert!(err.contains("link"), "{err}");
}

/// `data` gzip-compressed.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

#[test]
fn add_copies_a_gzip_file_that_is_not_a_tar_unchanged() {
    let Some(fx) = Fixture::new() else { return };
    // Docker extracts only what decompresses to a tar; a gzipped text is copied as it is,
    // whatever its name says.
    let ctx =
        fx.context("addgz", "FROM busybox\nADD notes.txt.gz /z/\nADD fake.tar.gz /y/\nADD real.tar.gz /x/\n", &[]);
    let notes = gzip(b"some notes\n");
    let fake = gzip(b"not a tar at all\n");
    std::fs::write(ctx.join("notes.txt.gz"), &notes).expect("write");
    std::fs::write(ctx.join("fake.tar.gz"), &fake).expect("write");
    archive(&fx, &ctx, "real.tar.gz", "-z", "inside\n");
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    assert_eq!(std::fs::read(root.join("z/notes.txt.gz")).expect("copied"), notes);
    assert_eq!(std::fs::read(root.join("y/fake.tar.gz")).expect("copied"), fake);
    assert_eq!(read(&root, "x/pkg/file"), "inside\n", "a real tarball is still extracted");
}

#[test]
fn copy_keeps_hard_links_within_a_source() {
    let Some(fx) = Fixture::new() else { return };
    // First a COPY written straight from the sources (nothing reads it soon), then, with a
    // RUN after it, one made as files: both keep the links. Separate sources are separate
    // files, as in Docker.
    let first = "FROM busybox\nCOPY data/ /data/\nCOPY data/a data/c /pair/\n";
    let ctx = fx.context("hardlinks", first, &[("data/a", "shared\n"), ("data/d", "alone\n")]);
    std::fs::hard_link(ctx.join("data/a"), ctx.join("data/b")).expect("link");
    std::fs::hard_link(ctx.join("data/a"), ctx.join("data/c")).expect("link");
    fx.build(&ctx);
    let second = format!("{first}COPY data/ /again/\nRUN stat -c %h /data/a /again/a > /links\n");
    std::fs::write(ctx.join("Dockerfile"), second).expect("write");
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    let inode = |p: &str| std::fs::metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}")).ino();
    for dir in ["data", "again"] {
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|f| inode(&format!("{dir}/{f}")));
        assert!(a == b && b == c && a != d, "{dir}: one inode with three names");
        assert_eq!(read(&root, &format!("{dir}/c")), "shared\n");
    }
    assert_eq!(read(&root, "links"), "3\n3\n", "the RUN sees three links in both copies");
    assert_ne!(inode("pair/a"), inode("pair/c"));
    // Breaking the link (same content, same mode) misses the cache from the first COPY on.
    std::fs::remove_file(ctx.join("data/c")).expect("rm");
    std::fs::write(ctx.join("data/c"), "shared\n").expect("write");
    let broken = fx.build(&ctx);
    assert_ne!(broken, id, "a broken hard link must miss the cache");
    let root = fx.rootfs(&broken);
    let inode = |p: &str| std::fs::metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}")).ino();
    assert_ne!(inode("data/c"), inode("data/a"));
    assert_eq!(read(&root, "links"), "2\n2\n");
}

#[test]
fn copy_from_a_symlink_keeps_the_link_name() {
    let Some(fx) = Fixture::new() else { return };
    // BuildKit follows a source (or wildcard match) that is a symlink and copies its target
    // under the link's name: /bin/cat (-> busybox) into /test/ is /test/cat.
    let ctx = fx.context(
        "fromlink",
        "FROM busybox AS base\nFROM scratch\nCOPY --from=base /bin/cat /test/\nCOPY --from=base /bin/sh /bin/\nCOPY --from=base /bin/ca* /wild/\n",
        &[],
    );
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    let base = rbuild::store::ImageStore::open(&fx.root).expect("store").resolve("busybox").expect("busybox").id;
    let busybox = std::fs::read(fx.rootfs(&base.to_string()).join("bin/busybox")).expect("busybox");
    for path in ["test/cat", "bin/sh", "wild/cat"] {
        let meta = std::fs::symlink_metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(meta.is_file(), "{path} is the link's target, copied");
        assert_eq!(std::fs::read(root.join(path)).expect("read"), busybox, "{path}");
    }
    assert!(!root.join("test/busybox").exists() && !root.join("bin/busybox").exists());
}

#[test]
fn a_wildcard_that_matches_nothing_is_skipped_among_others() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "wild",
        "FROM busybox AS base\nFROM busybox\nCOPY *foo *.txt /d/\nCOPY --from=base /etc/*foo /etc/pass* /e/\n",
        &[("a.txt", "a\n")],
    );
    let id = fx.build(&ctx);
    let root = fx.rootfs(&id);
    assert_eq!(read(&root, "d/a.txt"), "a\n");
    assert!(root.join("e/passwd").is_file());
    // When no source matches at all, the build fails and says the wildcard matched nothing.
    for (name, text) in [
        ("nothing", "FROM busybox\nCOPY *foo *bar /d/\n"),
        ("nothing-from", "FROM busybox AS base\nFROM busybox\nCOPY --from=base /etc/*foo /etc/*bar /d/\n"),
    ] {
        let ctx = fx.context(name, text, &[("a.txt", "a\n")]);
        let err = fx.build_err(&ctx).to_string();
        assert!(err.contains("wildcard \"") && err.contains("*foo\" matched nothing"), "{name}: {err}");
    }
}

/// History reads as `DOCKER_BUILDKIT=0 docker build` (20.10) wrote it for this Dockerfile and
/// these files (`docker history --no-trunc`), and the config carries what Docker stores.
#[test]
fn history_reads_as_classic_docker_writes_it() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "history",
        "FROM busybox\nMAINTAINER Jane Doe <jane@example.com>\nCOPY f1 /dst/\nCOPY d /ddir\nCOPY f1 f2 /multi/\nADD f1 /addf\nWORKDIR app\nWORKDIR ../srv\nEXPOSE 443/udp 80 8000-8002 53/UDP\nSHELL [\"/bin/sh\", \"-xc\"]\nENV A=1\nRUN echo hi > /hi\nVOLUME /data\nVOLUME [\"/a\", \"/b\"]\nENTRYPOINT [\"/bin/echo\"]\nENTRYPOINT []\nCMD [\"x\"]\n",
        &[("f1", "a\n"), ("f2", "b\n"), ("d/x", "c\n")],
    );
    for (path, mode) in [("f1", 0o644), ("f2", 0o644), ("d/x", 0o644), ("d", 0o755)] {
        std::fs::set_permissions(ctx.join(path), std::os::unix::fs::PermissionsExt::from_mode(mode)).expect("chmod");
    }
    let out = crate::fixture::rbuild_ok(&fx.root, &["build", "-q", ctx.to_str().expect("utf-8")]);
    let config = fx.config(out.trim());
    let history = config["history"].as_array().expect("history");
    let base = base_history(&fx);
    let created_by: Vec<&str> = history[base..].iter().map(|h| h["created_by"].as_str().unwrap_or("")).collect();
    let file_f1 = "file:503d1c26d43ecb89daff3a6152da7e578c1e6cdc29d19999e9372774459f5459";
    assert_eq!(
        created_by,
        [
            "/bin/sh -c #(nop)  MAINTAINER Jane Doe <jane@example.com>".to_string(),
            format!("/bin/sh -c #(nop) COPY {file_f1} in /dst/ "),
            "/bin/sh -c #(nop) COPY dir:a543d25e8fff3abb7032f9b1a4038b9bf652e4007e780791a706f609779903f3 in /ddir "
                .into(),
            "/bin/sh -c #(nop) COPY multi:c5fda14f8973ea3e7c4e3f97ae14c3144d875cc3e5afd0ad72c2969d5253838f in /multi/ "
                .into(),
            format!("/bin/sh -c #(nop) ADD {file_f1} in /addf "),
            "/bin/sh -c #(nop) WORKDIR /app".into(),
            "/bin/sh -c #(nop) WORKDIR /srv".into(),
            "/bin/sh -c #(nop)  EXPOSE 443/udp 53/UDP 80 8000-8002".into(),
            "/bin/sh -xc #(nop)  SHELL [/bin/sh -xc]".into(),
            "/bin/sh -xc #(nop)  ENV A=1".into(),
            "/bin/sh -xc echo hi > /hi".into(),
            "/bin/sh -xc #(nop)  VOLUME [/data]".into(),
            "/bin/sh -xc #(nop)  VOLUME [/a /b]".into(),
            "/bin/sh -xc #(nop)  ENTRYPOINT [\"/bin/echo\"]".into(),
            "/bin/sh -xc #(nop)  ENTRYPOINT []".into(),
            "/bin/sh -xc #(nop)  CMD [\"x\"]".into(),
        ]
    );
    assert!(
        history[base..].iter().all(|h| h["author"] == "Jane Doe <jane@example.com>"),
        "MAINTAINER's author is on every later entry: {history:?}"
    );
    assert_eq!(config["author"], "Jane Doe <jane@example.com>");
    assert_eq!(config["config"]["Entrypoint"], Value::Null, "ENTRYPOINT [] is stored as null");
    assert_eq!(config["config"]["Cmd"], json!(["x"]));

    // A child, of an image or of a stage, does not inherit the Author.
    let child = fx.context(
        "history-child",
        "FROM busybox AS base\nMAINTAINER Jane Doe <jane@example.com>\nENV A=1\nFROM base\nENV B=2\n",
        &[],
    );
    let id = fx.build(&child);
    assert_eq!(fx.config(&id)["author"], Value::Null);
}

/// RUN gets the user's supplementary groups from the image's /etc/group as BuildKit gives
/// them (the groups listing the user; none with an explicit group), and Docker's open-files
/// limit whatever the caller's is.
#[test]
fn run_gets_the_image_groups_and_the_container_nofile_limit() {
    let Some(fx) = Fixture::new() else { return };
    let ctx = fx.context(
        "groups",
        "FROM busybox\nRUN echo app:x:1000:1000::/:/bin/sh >> /etc/passwd && printf 'app:x:1000:\\nwheel:x:10:app,root\\nadm:x:4:app\\n' >> /etc/group\nUSER app\nRUN id > /tmp/id-app\nUSER app:wheel\nRUN id > /tmp/id-app-wheel\nUSER root\nRUN id > /tmp/id-root && ulimit -Sn > /tmp/nofile && ulimit -Hn >> /tmp/nofile\n",
        &[],
    );
    // The caller's own soft limit must not leak into RUN.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -Sn 512 && exec {} build -q \"$0\"", crate::fixture::RBUILD))
        .arg(&ctx)
        .env("RBUILD_ROOT", &fx.root)
        .output()
        .expect("rbuild");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = fx.rootfs(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(read(&root, "tmp/id-app"), "uid=1000(app) gid=1000(app) groups=4(adm),10(wheel)\n");
    assert_eq!(read(&root, "tmp/id-app-wheel"), "uid=1000(app) gid=10(wheel)\n");
    assert_eq!(read(&root, "tmp/id-root"), "uid=0(root) gid=0(root) groups=10(wheel)\n");
    // Docker's 1048576; without CAP_SYS_RESOURCE (some sandboxes) the hard limit cannot be
    // raised and both become the caller's hard limit.
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let cap_eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    const CAP_SYS_RESOURCE: u32 = 24; // linux/capability.h
    let may_raise = u64::from_str_radix(cap_eff, 16).unwrap_or(0) & (1 << CAP_SYS_RESOURCE) != 0;
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.unwrap_or(u64::MAX);
    let nofile = if may_raise { 1 << 20 } else { hard.min(1 << 20) };
    assert_eq!(read(&root, "tmp/nofile"), format!("{nofile}\n{nofile}\n"));
}

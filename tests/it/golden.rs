//! Golden tests: what a user reads, compared with the `insta` snapshots in `snapshots/`. Image
//! IDs, digests and cache keys, times, durations, sizes and temp paths are redacted by filters,
//! so a snapshot holds only what must stay byte-identical (the words, the layout, the order,
//! the exit status). Under `CI=true` insta never writes a snapshot: a difference fails the
//! test; review a change with `cargo insta review` (or `INSTA_UPDATE=always`) and commit it.
//!
//! The Dockerfile error snapshots are taken by `cli.rs`, beside its checks of the same errors.
//! The build snapshots need root and /bin/busybox (as every build test); they skip otherwise
//! and fail under CI=true.

use std::path::Path;
use std::process::Output;

use crate::fixture::{rbuild, rbuild_command, Fixture};

/// The filters every snapshot goes through, after `paths` (a path and what it reads as).
fn settings(paths: &[(&Path, &str)]) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    for (path, name) in paths {
        settings.add_filter(&regex::escape(&path.display().to_string()), *name);
    }
    settings.add_filter(&regex::escape(env!("CARGO_MANIFEST_DIR")), "[REPO]");
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[HEX]");
    settings.add_filter(r"\b[0-9a-f]{12}\b", "[ID]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "[TIME]");
    settings.add_filter(r"(Less than a second|About a minute|About an hour|\d+ (seconds|minutes|hours)) ago", "[AGO]");
    settings.add_filter(r"\b\d+(\.\d+)?(B|kB|KB|MB|GB)\b", "[SIZE]");
    settings.add_filter(r"\b\d+(\.\d+)?(ms|s)\b", "[DURATION]");
    settings.add_filter(r#""(duration_ms|elapsed_ms|time|timestamp|size|bytes)":\s?[0-9.]+"#, r#""$1":[N]"#);
    settings
}

/// Exit status, stdout and stderr of one command, as one snapshot.
fn shown(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_golden(name: &str, text: &str, paths: &[(&Path, &str)]) {
    settings(paths).bind(|| insta::assert_snapshot!(name, text));
}

/// Runs rbuild without a store (front-end commands; `RBUILD_ROOT` names none), with `dir`
/// redacted.
fn frontend(name: &str, args: &[&str], dir: &Path) {
    // No store at all, whatever this machine's default one holds: a dry run then says which
    // base images it could not resolve.
    let no_store = tempfile::tempdir().expect("tempdir");
    let out = rbuild_command()
        .args(args)
        .arg(dir)
        .env_remove("CI")
        .env("RBUILD_ROOT", no_store.path().join("none"))
        .output()
        .expect("run rbuild");
    assert_golden(name, &shown(&out), &[(dir, "[CONTEXT]")]);
}

/// A context holding only a Dockerfile with `text`.
fn dockerfile(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), text).expect("write");
    dir
}

#[test]
fn dry_run_with_stages_target_and_build_args() {
    let ctx = dockerfile(
        "ARG BASE=busybox\nFROM $BASE AS one\nARG V=1\nRUN echo $V > /v\nFROM busybox AS two\nCOPY --from=one /v /v\nFROM two\nCMD [\"cat\", \"/v\"]\n",
    );
    frontend("dry_run_stages", &["build", "--dry-run", "--target", "two", "--build-arg", "V=7"], ctx.path());
}

#[test]
fn parse_dump_of_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example/Dockerfile");
    frontend("parse_dump_example", &["parse", "--dump", "-f"], &example);
}

/// A store with busybox and a context for the example-like Dockerfile the build snapshots use.
struct Golden {
    fx: Fixture,
    ctx: std::path::PathBuf,
}

const DOCKERFILE: &str = "FROM busybox\nENV GREETING=hello\nCOPY greeting.txt /srv/\nRUN cat /srv/greeting.txt && echo $GREETING > /srv/out\nWORKDIR /srv\nCMD [\"cat\", \"/srv/out\"]\n";

impl Golden {
    fn new() -> Option<Golden> {
        let fx = Fixture::new()?;
        let ctx = fx.context("ctx", DOCKERFILE, &[("greeting.txt", "hi\n")]);
        Some(Golden { fx, ctx })
    }

    fn rbuild(&self, args: &[&str]) -> Output {
        rbuild(&self.fx.root, args)
    }

    fn build(&self, extra: &[&str]) -> Output {
        let ctx = self.ctx.to_string_lossy().into_owned();
        self.rbuild(&[&["build"], extra, &[&ctx]].concat())
    }

    fn assert(&self, name: &str, out: &Output) {
        self.assert_text(name, &shown(out));
    }

    fn assert_text(&self, name: &str, text: &str) {
        assert_golden(name, text, &[(&self.ctx, "[CONTEXT]"), (self.fx.dir.path(), "[TMP]")]);
    }
}

#[test]
fn classic_cold_warm_and_missed_builds() {
    let Some(g) = Golden::new() else { return };
    g.assert("build_cold_plain", &g.build(&["--progress", "plain", "-t", "golden:1"]));
    g.assert("build_warm_plain", &g.build(&["--progress", "plain", "-t", "golden:1"]));
    std::fs::write(g.ctx.join("greeting.txt"), "changed\n").expect("edit");
    g.assert("build_copy_miss_plain", &g.build(&["--progress", "plain", "-t", "golden:2"]));
    g.assert("build_copy_miss_json", &g.build(&["--progress", "json", "--no-cache"]));
}

#[test]
fn json_events_of_a_cold_build() {
    let Some(g) = Golden::new() else { return };
    g.assert("build_cold_json", &g.build(&["--progress", "json"]));
}

#[test]
fn tty_renderer_of_a_build() {
    let Some(g) = Golden::new() else { return };
    g.assert("build_tty", &g.build(&["--progress", "tty"]));
}

#[test]
fn a_failing_run_shows_its_exit_status() {
    let Some(g) = Golden::new() else { return };
    std::fs::write(g.ctx.join("Dockerfile"), "FROM busybox\nRUN echo before\nRUN echo failing >&2 && exit 3\n")
        .expect("write");
    g.assert("build_failing_run", &g.build(&["--progress", "plain"]));
}

#[test]
fn a_missing_copy_source_is_named() {
    let Some(g) = Golden::new() else { return };
    std::fs::write(g.ctx.join("Dockerfile"), "FROM busybox\nCOPY nowhere.txt /srv/\n").expect("write");
    g.assert("build_missing_copy_source", &g.build(&["--progress", "plain"]));
}

#[test]
fn history_inspect_and_images_of_a_built_image() {
    let Some(g) = Golden::new() else { return };
    let built = g.build(&["-q", "-t", "golden:1"]);
    assert!(built.status.success(), "{}", shown(&built));
    g.assert("history", &g.rbuild(&["history", "golden:1"]));
    g.assert("history_no_trunc", &g.rbuild(&["history", "--no-trunc", "golden:1"]));
    g.assert("inspect", &g.rbuild(&["inspect", "golden:1"]));
    g.assert("images", &g.rbuild(&["images"]));
}

//! The real `rbuild` binary: error rendering and exit codes, the short form, `parse`, and
//! `build --dry-run` on the example context.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn rbuild() -> Command {
    crate::fixture::rbuild_command()
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("rbuild runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn context_with(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write Dockerfile");
    dir
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/example")
}

/// Runs a dry run of `dockerfile` and checks the error: exit 1, `Dockerfile:line:col: message`
/// and the offending line quoted with a caret; the whole message is snapshot `name`.
fn assert_user_error(name: &str, dockerfile: &str, line: usize, col: usize, message: &str) {
    let dir = context_with(dockerfile);
    let (code, _out, err) = run(rbuild().args(["build", "--dry-run"]).arg(dir.path()));
    crate::golden::assert_golden(name, &err, &[(dir.path(), "[CONTEXT]")]);
    assert_eq!(code, 1, "exit code for {message:?}; stderr:\n{err}");
    let file = dir.path().join("Dockerfile");
    let headline = format!("{}:{line}:{col}: ", file.display());
    assert!(err.contains(&headline), "expected {headline:?} in:\n{err}");
    assert!(err.contains(message), "expected {message:?} in:\n{err}");
    assert!(err.contains(&format!(" {line} | >>> ")), "the line is quoted:\n{err}");
    assert!(err.lines().any(|l| l.trim_end().ends_with('^')), "a caret marks the column:\n{err}");
}

#[test]
fn unterminated_heredoc() {
    assert_user_error("error_unterminated_heredoc", "FROM busybox\nRUN <<EOF\necho hi\n", 2, 5, "unterminated heredoc");
}

#[test]
fn bad_json_form() {
    assert_user_error("error_bad_json_form", "FROM busybox\nCMD [\"echo\", [\"nested\"]]\n", 2, 5, "JSON");
}

#[test]
fn unknown_instruction() {
    assert_user_error(
        "error_unknown_instruction",
        "FROM busybox\nFORM x\n",
        2,
        1,
        "unknown instruction: FORM (did you mean FROM?)",
    );
}

#[test]
fn bad_flag() {
    assert_user_error("error_bad_flag", "FROM busybox\nCOPY --chwon=1:1 a /a\n", 2, 6, "unknown flag: --chwon");
}

#[test]
fn arg_without_name() {
    assert_user_error("error_arg_without_name", "FROM busybox\nARG\n", 2, 1, "ARG requires at least one argument");
}

#[test]
fn mandatory_variable_unset() {
    assert_user_error(
        "error_mandatory_variable_unset",
        "FROM busybox\nWORKDIR ${APP_DIR:?APP_DIR must be set}\n",
        2,
        9,
        "APP_DIR must be set",
    );
}

#[test]
fn missing_dockerfile_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(rbuild().args(["build", "--dry-run"]).arg(dir.path()));
    assert_eq!(code, 1);
    assert!(err.contains(&dir.path().join("Dockerfile").display().to_string()), "{err}");
    crate::golden::assert_golden("error_missing_dockerfile", &err, &[(dir.path(), "[CONTEXT]")]);
}

#[test]
fn dry_run_of_the_example_shows_steps_keys_and_context() {
    let (code, out, err) = run(rbuild().args(["build", "--dry-run"]).arg(example()));
    assert_eq!(code, 0, "stderr:\n{err}");
    // .dockerignore keeps build.log and secrets/ out: Dockerfile, .dockerignore and app/ remain.
    assert!(out.contains(": 4 files,"), "{out}");
    for n in 1..=7 {
        assert!(out.contains(&format!("Step {n}/7 : ")), "step {n} missing:\n{out}");
    }
    assert_eq!(out.matches("  cache key: sha256:").count(), 7, "{out}");
    assert!(out.contains("  expanded: ENV REFRESHED_AT=2016-11-09"), "{out}");
    crate::golden::assert_golden("dry_run_example", &out, &[]);
    // Same input, same plan.
    let (_, again, _) = run(rbuild().args(["build", "--dry-run"]).arg(example()));
    assert_eq!(out, again);
}

#[test]
fn copy_keys_follow_content_not_mtime() {
    let dir = context_with("FROM busybox\nCOPY app/ /app/\n");
    std::fs::create_dir(dir.path().join("app")).expect("mkdir");
    std::fs::write(dir.path().join("app/main.py"), "print(1)\n").expect("write");
    let key = || {
        let (code, out, err) = run(rbuild().args(["build", "--dry-run"]).arg(dir.path()));
        assert_eq!(code, 0, "{err}");
        out.lines().rfind(|l| l.contains("cache key")).map(str::to_string).unwrap_or_default()
    };
    let first = key();
    let file = std::fs::File::options().write(true).open(dir.path().join("app/main.py")).expect("open");
    file.set_modified(std::time::SystemTime::UNIX_EPOCH).expect("touch");
    assert_eq!(first, key(), "a new mtime alone must not change the key");
    std::fs::write(dir.path().join("app/main.py"), "print(2)\n").expect("write");
    assert_ne!(first, key(), "new content must change the key");
}

#[test]
fn short_form_is_build() {
    let (code, out, err) = run(rbuild().args(["-t", "app:1", "--dry-run"]).arg(example()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Step 1/7 : FROM busybox"), "{out}");
}

/// The short form applies to a flag, `-` or a directory; anything else is a subcommand, and an
/// unknown one is named with the nearest real one (it used to be read as a build context:
/// "failed to open file `imgaes/Dockerfile`").
#[test]
fn unknown_subcommands_are_errors_with_a_suggestion() {
    let (code, out, err) = run(rbuild().arg("imgaes"));
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_eq!(err, "Error: unrecognized subcommand 'imgaes'; did you mean 'images'?\nSee 'rbuild --help'.\n");
    let (code, _, err) = run(rbuild().arg("frobnicate"));
    assert_eq!((code, err.as_str()), (1, "Error: unrecognized subcommand 'frobnicate'\nSee 'rbuild --help'.\n"));
    // A directory is the short form: the example's dry run.
    let (code, out, err) = run(rbuild().arg("--dry-run").arg(example()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Step 1/7 : FROM busybox"), "{out}");
    let (code, out, err) = run(rbuild().current_dir(example()).args([".", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Step 7/7 : CMD"), "{out}");
    // A remote context's URL is the short form too (nothing listens there: the fetch fails).
    let (code, _, err) = run(rbuild().args(["git://127.0.0.1:1/repo.git", "--dry-run"]));
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("unrecognized subcommand"), "{err}");
    // A directory named like a subcommand is still the subcommand: `login` logs in.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("login")).expect("mkdir");
    let (code, out, err) = run(rbuild().current_dir(dir.path()).args(["login", "--help"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("--password-stdin"), "{out}");
}

/// `completion` writes scripts generated from the real flags; bash loads its script.
#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let (code, bash, err) = run(rbuild().args(["completion", "bash"]));
    assert_eq!(code, 0, "{err}");
    assert!(bash.contains("--iidfile") && bash.contains("--metadata-file") && bash.contains("images"), "{bash}");
    let mut loaded = Command::new("bash");
    loaded.args(["-c", "source /dev/stdin && complete -p rbuild"]).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = loaded.spawn().expect("bash");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), bash.as_bytes()).expect("write");
    let shown = child.wait_with_output().expect("bash");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("-F _rbuild rbuild"), "{shown:?}");
    let (_, zsh, _) = run(rbuild().args(["completion", "zsh"]));
    assert!(zsh.starts_with("#compdef rbuild"), "{zsh}");
    let (_, fish, _) = run(rbuild().args(["completion", "fish"]));
    assert!(fish.contains("complete -c rbuild -n \"__fish_rbuild_needs_command\" -f -a \"build\""), "{fish}");
    let (code, _, err) = run(rbuild().args(["completion", "tcsh"]));
    assert_eq!(code, 1);
    assert!(err.contains("invalid value 'tcsh'") && err.contains("bash"), "{err}");
}

/// `man` prints rbuild(1) and writes one page per command; `man -l` renders them.
#[test]
fn man_pages_for_every_command() {
    let (code, page, err) = run(rbuild().arg("man"));
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH rbuild 1") && page.contains("rbuild\\-build"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = run(rbuild().args(["man", "--output-dir"]).arg(dir.path().join("man1")));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("manual pages written to"), "{out}");
    for name in ["rbuild.1", "rbuild-build.1", "rbuild-login.1", "rbuild-search.1", "rbuild-store-gc.1"] {
        assert!(dir.path().join("man1").join(name).is_file(), "{name} missing");
    }
    if Path::new("/usr/bin/man").exists() {
        let shown = Command::new("man")
            .args(["-P", "cat", "-l"])
            .arg(dir.path().join("man1/rbuild-build.1"))
            .env("MANWIDTH", "100")
            .output()
            .expect("man");
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(text.contains("--metadata-file"), "{text}");
    }
}

#[test]
fn target_and_build_arg_flags() {
    let dir = context_with("ARG BASE=busybox\nFROM $BASE AS one\nARG V\nRUN echo $V\nFROM one AS two\nRUN two\n");
    let (code, out, err) = run(rbuild()
        .args(["build", "--dry-run", "--target", "one", "--build-arg", "V=7", "--build-arg", "NOPE=1"])
        .arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Stage 1 (two) from stage 0 (skipped"), "{out}");
    assert!(out.contains("  build arg: V=7"), "{out}");
    assert!(err.contains("[Warning] One or more build-args [NOPE] were not consumed"), "{err}");
}

#[test]
fn parse_prints_dump_json_and_listing() {
    let dir = context_with("FROM busybox\nRUN echo \\\n  hi\nENV A=1 B=\"x y\"\n");
    let file = dir.path().join("Dockerfile");
    let (code, out, _) = run(rbuild().args(["parse", "--dump", "-f"]).arg(&file));
    assert_eq!(code, 0);
    assert_eq!(out, "(from \"busybox\")\n(run \"echo   hi\")\n(env \"A\" \"1\" \"=\" \"B\" \"\\\"x y\\\"\" \"=\")\n");
    let (code, out, _) = run(rbuild().args(["parse", "--json", "-f"]).arg(&file));
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["instructions"][1]["start_line"], 2);
    assert_eq!(json["instructions"][1]["end_line"], 3);
    let (code, out, _) = run(rbuild().args(["parse", "-f"]).arg(&file));
    assert_eq!(code, 0);
    assert!(out.contains("   2-3    (run \"echo   hi\")"), "{out}");
}

#[test]
fn parse_is_syntactic_and_check_reads_instructions() {
    let dir = context_with("FROM debian\nHEALTHCHECK\nHEALTHCHECK CONNECT TCP 7000\nFORM x\n");
    let file = dir.path().join("Dockerfile");
    let (code, out, err) = run(rbuild().args(["parse", "--dump", "-f"]).arg(&file));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "(from \"debian\")\n(healthcheck)\n(healthcheck \"CONNECT\" \"TCP 7000\")\n(form)\n");
    let (code, _, err) = run(rbuild().args(["parse", "--check", "-f"]).arg(&file));
    assert_eq!(code, 1);
    assert!(err.contains(":2:1: HEALTHCHECK requires an argument"), "{err}");
}

#[test]
fn parse_reads_stdin() {
    let mut child = rbuild()
        .args(["parse", "--dump", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(b"from alpine\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "(from \"alpine\")\n");
}

#[test]
fn closed_pipe_is_quiet() {
    let mut text = String::from("FROM busybox\n");
    for i in 0..20_000 {
        text.push_str(&format!("RUN echo {i}\n"));
    }
    let dir = context_with(&text);
    let mut child = rbuild()
        .args(["parse", "--dump", "-f"])
        .arg(dir.path().join("Dockerfile"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 16];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("read");
    // The reader is gone: rbuild must stop quietly, without a panic message.
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let (code, _, err) = run(rbuild().args(["build", "--no-such-flag"]));
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = run(rbuild().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("parse"));
}

#[test]
fn a_base_image_that_cannot_be_pulled_is_a_clear_error() {
    // Port 1 on loopback: nothing listens, so the pull fails with connection refused.
    let dir = context_with("FROM 127.0.0.1:1/nothing\nRUN true\n");
    let store = tempfile::tempdir().expect("temp dir");
    for extra in [&[][..], &["--pull"][..]] {
        let (code, _, err) = run(rbuild().env("RBUILD_ROOT", store.path()).arg("build").args(extra).arg(dir.path()));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("pull access denied for 127.0.0.1:1/nothing"), "{err}");
        assert!(err.contains("Connection refused"), "{err}");
    }
}

#[test]
fn a_stage_the_target_does_not_need_is_not_pulled() {
    // The unused stage's base cannot be pulled (nothing listens on port 1); the target's
    // stage is FROM scratch, so the build needs no image at all.
    let dir = context_with("FROM 127.0.0.1:1/nothing AS unused\nRUN true\n\nFROM scratch AS app\nLABEL a=b\n");
    let store = tempfile::tempdir().expect("temp dir");
    for extra in [&[][..], &["--pull"][..]] {
        let (code, out, err) = run(rbuild()
            .env("RBUILD_ROOT", store.path())
            .args(["build", "--progress", "json", "--target", "app"])
            .args(extra)
            .arg(dir.path()));
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains("\"event\":\"pull\""), "nothing is pulled: {out}");
    }
}

#[test]
fn invalid_references_are_refused_before_any_registry() {
    assert_user_error(
        "error_invalid_reference_upper",
        "FROM UPPER:tag\n",
        1,
        6,
        "invalid reference format \"UPPER:tag\"",
    );
    assert_user_error("error_invalid_reference_two_tags", "FROM a:b:c\n", 1, 6, "invalid reference format \"a:b:c\"");
    assert_user_error(
        "error_invalid_reference_short_digest",
        "FROM x@sha256:1234\nRUN true\n",
        1,
        6,
        "invalid reference format \"x@sha256:1234\"",
    );
    assert_user_error(
        "error_invalid_reference_copy_from",
        "FROM busybox\nCOPY --from=Bad:Tag / /\n",
        2,
        13,
        "invalid reference format \"Bad:Tag\"",
    );
}

#[test]
fn a_stage_that_names_itself_is_refused() {
    assert_user_error("error_stage_refers_to_itself", "FROM a AS a\nRUN true\n", 1, 6, "stage a refers to itself");
}

#[test]
fn an_unset_arg_in_from_or_an_empty_mount_from_says_so() {
    assert_user_error(
        "error_unset_arg_in_from",
        "ARG X\nFROM platform-${X}\n",
        2,
        6,
        "($X not set: declare it with ARG before the first FROM",
    );
    assert_user_error(
        "error_empty_mount_from",
        "FROM busybox\nARG S\nRUN --mount=from=$S,target=/x true\n",
        3,
        1,
        "from= is empty: name an earlier stage",
    );
}

#[test]
fn an_empty_build_arg_is_an_error() {
    let dir = context_with("FROM busybox\n");
    let (code, _, err) = run(rbuild().args(["build", "--dry-run", "--build-arg", ""]).arg(dir.path()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid --build-arg \"\": expected NAME=VALUE or NAME"), "{err}");
}

#[test]
fn run_and_rmi_say_the_cause_once_and_blame_no_daemon() {
    let store = tempfile::tempdir().expect("temp dir");
    let rb = || {
        let mut c = rbuild();
        c.env("RBUILD_ROOT", store.path());
        c
    };
    let (code, _, err) = run(rb().args(["rmi", "nothere"]));
    assert_eq!((code, err.as_str()), (1, "Error: No such image: nothere\n"));
    let (code, _, err) = run(rb().args(["run", "--rm", "UPPER:tag", "true"]));
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("Error: invalid reference format \"UPPER:tag\""), "{err}");
    let (code, _, err) = run(rb().args(["run", "--rm", "nothere", "true"]));
    assert_eq!((code, err.as_str()), (1, "Error: No such image: nothere\n"));
}

#[test]
fn a_variable_as_stage_name_is_shown_as_written_and_explained() {
    assert_user_error(
        "error_invalid_stage_name",
        "FROM busybox AS ${First_Stage}\n",
        1,
        17,
        "invalid stage name \"${First_Stage}\": it must start with a letter",
    );
    assert_user_error(
        "error_variable_as_stage_name",
        "FROM busybox AS ${First_Stage}\n",
        1,
        17,
        "stage names are not expanded",
    );
}

#[test]
fn a_wildcard_that_matches_nothing_says_so() {
    let dir = context_with("FROM busybox\nCOPY *foo /x/\n");
    std::fs::write(dir.path().join("bar"), "b").expect("write");
    let (code, _, err) = run(rbuild().args(["build", "--dry-run"]).arg(dir.path()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("wildcard \"*foo\" matched nothing in build context"), "{err}");
}

//! The container commands run as the real binary, as root, against a temp store with a
//! busybox base imported by `rbuild import`: run (exit codes, --rm, -it through tmux and its logs, SIGINT),
//! diff, commit, export, -d with ps/stop/logs/rm, start on the kept upper dir, zombie reaping.
//! Needs root, /bin/busybox (Debian: busybox-static) and tmux (Debian: tmux); skips without
//! them, fails under CI=true.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{busybox_tree, have_tool, is_root, rbuild, rbuild_ok, require, tar_of, tree_listing};
use rbuild::image::ImageConfig;
use rbuild::store::ImageStore;

struct Store {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
}

/// A store with busybox imported as `bb:latest` (with `/etc/motd` = "base"); None to skip.
fn setup() -> Option<Store> {
    if !require(is_root(), "root (overlay mounts, namespaces)") {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    if !busybox_tree(&tree) {
        return None;
    }
    std::fs::write(tree.join("etc/motd"), "base\n").unwrap();
    let tarball = tmp.path().join("rootfs.tar");
    tar_of(&tree, &tarball);
    let root = tmp.path().join("store");
    rbuild_ok(&root, &["import", tarball.to_str().unwrap(), "bb", "-c", r#"CMD ["sh"]"#]);
    Some(Store { dir: tmp.path().to_path_buf(), root, _tmp: tmp })
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `cond` for up to `secs` seconds.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn no_mounts_under(root: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = root.to_string_lossy();
    !info.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(root.as_ref())))
}

/// A container that added /file, deleted /etc/passwd and changed /etc/motd.
const CHANGES: &str = "echo hi > /file && rm /etc/passwd && echo more >> /etc/motd";

#[test]
fn run_rm_exits_with_the_container_code_and_removes_it() {
    let Some(s) = setup() else { return };
    let out = rbuild(&s.root, &["run", "--rm", "bb", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(rbuild_ok(&s.root, &["ps", "-aq"]), "");
    assert_eq!(std::fs::read_dir(s.root.join("containers")).unwrap().count(), 0);
    assert!(no_mounts_under(&s.root));
}

/// Output reaches stdout and the log byte for byte, as `docker run` and `docker logs` give it:
/// no newline where the command wrote none, and a long line without one (over the 1 MiB a
/// piece of output is cut at) is not broken up.
#[test]
fn run_and_logs_pass_output_on_exactly() {
    let Some(s) = setup() else { return };
    let out = rbuild(&s.root, &["run", "--name", "exact", "bb", "printf", "abc"]);
    assert_eq!(out.stdout, b"abc", "{}", text(&out.stderr));
    assert_eq!(rbuild_ok(&s.root, &["logs", "exact"]), "abc");
    let long =
        rbuild(&s.root, &["run", "--rm", "bb", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; printf end"]);
    let expected = [vec![b'x'; 3_000_000], b"\nend".to_vec()].concat();
    assert!(
        long.stdout == expected,
        "{} bytes, {} newlines",
        long.stdout.len(),
        long.stdout.iter().filter(|b| **b == b'\n').count()
    );
}

#[test]
fn run_honours_image_config_and_flags() {
    let Some(s) = setup() else { return };
    let out = rbuild_ok(
        &s.root,
        &["run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "bb", "sh", "-c", "echo $A $(pwd) $(id -u)"],
    );
    assert_eq!(out, "1 /tmp 65534\n");
    let out = rbuild_ok(&s.root, &["run", "--rm", "--entrypoint", "echo", "bb", "a", "b"]);
    assert_eq!(out, "a b\n");
    let missing = rbuild(&s.root, &["run", "--rm", "bb", "no-such-command"]);
    assert_eq!(code(&missing), 127, "{}", text(&missing.stderr));
    let unknown = rbuild(&s.root, &["diff", "nope"]);
    assert_eq!(code(&unknown), 1);
    assert_eq!(text(&unknown.stderr), "Error: No such container: nope\n");
}

#[test]
fn diff_shows_added_changed_and_deleted_paths() {
    let Some(s) = setup() else { return };
    rbuild_ok(&s.root, &["run", "--name", "c1", "bb", "sh", "-c", CHANGES]);
    let diff = rbuild_ok(&s.root, &["diff", "c1"]);
    assert_eq!(diff, "C /etc\nC /etc/motd\nD /etc/passwd\nA /file\n");
}

#[test]
fn commit_makes_an_image_with_the_changes_config_and_history() {
    let Some(s) = setup() else { return };
    rbuild_ok(&s.root, &["run", "--name", "c1", "bb", "sh", "-c", CHANGES]);
    let id = rbuild_ok(
        &s.root,
        &["commit", "-m", "msg", "-a", "me", "-c", r#"CMD ["sh"]"#, "-c", "ENV A=1", "c1", "name:tag"],
    );
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let store = ImageStore::open(&s.root).unwrap();
    let image = store.resolve("name:tag").unwrap();
    assert_eq!(image.id.to_string(), id);
    let config = ImageConfig::from_json(&image.config_raw).unwrap();
    assert_eq!(config.config.cmd, Some(vec!["sh".to_string()]));
    assert!(config.config.env.contains(&"A=1".to_string()), "{:?}", config.config.env);
    let last = config.history.last().unwrap();
    assert_eq!(last.comment.as_deref(), Some("msg"));
    assert_eq!(last.author.as_deref(), Some("me"));
    assert!(!last.empty_layer);
    assert_eq!(config.author.as_deref(), Some("me"));

    let rootfs = s.dir.join("committed");
    std::fs::create_dir(&rootfs).unwrap();
    store.flatten_into(&image, &rootfs).unwrap();
    assert_eq!(std::fs::read_to_string(rootfs.join("file")).unwrap(), "hi\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/motd")).unwrap(), "base\nmore\n");
    assert!(!rootfs.join("etc/passwd").exists());

    // The committed image runs.
    assert_eq!(rbuild_ok(&s.root, &["run", "--rm", "name:tag", "cat", "/file"]), "hi\n");
}

#[test]
fn export_is_the_image_rootfs_plus_the_changes() {
    let Some(s) = setup() else { return };
    rbuild_ok(&s.root, &["run", "--name", "c1", "bb", "sh", "-c", CHANGES]);
    let tarball = s.dir.join("c1.tar");
    rbuild_ok(&s.root, &["export", "-o", tarball.to_str().unwrap(), "c1"]);
    let exported = s.dir.join("exported");
    std::fs::create_dir(&exported).unwrap();
    let st =
        Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(&tarball).arg("-C").arg(&exported).status().unwrap();
    assert!(st.success());

    // The expected tree: the image flattened, the same changes made by hand.
    let store = ImageStore::open(&s.root).unwrap();
    let expected = s.dir.join("expected");
    std::fs::create_dir(&expected).unwrap();
    store.flatten_into(&store.resolve("bb").unwrap(), &expected).unwrap();
    std::fs::write(expected.join("file"), "hi\n").unwrap();
    std::fs::remove_file(expected.join("etc/passwd")).unwrap();
    std::fs::write(expected.join("etc/motd"), "base\nmore\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(expected.join("file"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let listed = |dir: &Path| -> Vec<String> {
        // The runtime's mount points may appear in the upper dir as copied-up directories.
        tree_listing(dir)
    };
    assert_eq!(listed(&exported), listed(&expected));
}

#[test]
fn detached_container_ps_stop_logs_rm() {
    let Some(s) = setup() else { return };
    let id = rbuild_ok(&s.root, &["run", "-d", "--name", "bg", "bb", "sh", "-c", "echo started; exec sleep 100"]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(wait_for(10, || rbuild_ok(&s.root, &["logs", "bg"]) == "started\n"));

    let ps = rbuild_ok(&s.root, &["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND"), "{ps}");
    assert!(lines[0].ends_with("NAMES"), "{ps}");
    assert_eq!(lines.len(), 2, "{ps}");
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(lines[1].contains(" Up "), "{ps}");
    assert!(lines[1].contains("\"sh -c echo started;…\""), "{ps}");
    assert!(lines[1].ends_with("bg"), "{ps}");

    let refused = rbuild(&s.root, &["rm", "bg"]);
    assert_eq!(code(&refused), 1);
    assert!(text(&refused.stderr).contains("You cannot remove a running container"), "{}", text(&refused.stderr));
    let rmi = rbuild(&s.root, &["rmi", "bb"]);
    assert_ne!(code(&rmi), 0, "rmi must refuse while the container exists");

    // `sleep` is PID 1 and has no SIGTERM handler, so (as in Docker) SIGTERM does nothing
    // and stop kills it when the timeout is up.
    assert_eq!(rbuild_ok(&s.root, &["stop", "-t", "1", "bg"]), "bg\n");
    assert_eq!(rbuild_ok(&s.root, &["ps", "-q"]), "");
    let all = rbuild_ok(&s.root, &["ps", "-a"]);
    assert!(all.contains("Exited (137) "), "{all}");
    assert_eq!(rbuild_ok(&s.root, &["ps", "-aq", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(rbuild_ok(&s.root, &["logs", &id[..8]]), "started\n");

    assert_eq!(rbuild_ok(&s.root, &["rm", "bg"]), "bg\n");
    assert!(!s.root.join("containers").join(format!("{id}.json")).exists());
    assert!(!s.root.join("containers").join(&id).exists());
    assert_eq!(rbuild_ok(&s.root, &["ps", "-aq"]), "");
    assert!(no_mounts_under(&s.root));
    rbuild_ok(&s.root, &["rmi", "bb"]);
}

#[test]
fn stop_kills_what_ignores_sigterm_and_rm_force_removes_a_running_one() {
    let Some(s) = setup() else { return };
    rbuild_ok(&s.root, &["run", "-d", "--name", "stubborn", "bb", "sh", "-c", "trap '' TERM; echo ready; sleep 100"]);
    assert!(wait_for(10, || rbuild_ok(&s.root, &["logs", "stubborn"]) == "ready\n"));
    rbuild_ok(&s.root, &["stop", "-t", "1", "stubborn"]);
    assert!(rbuild_ok(&s.root, &["ps", "-a"]).contains("Exited (137) "));

    rbuild_ok(&s.root, &["run", "-d", "--name", "busy", "bb", "sleep", "100"]);
    assert_eq!(rbuild_ok(&s.root, &["rm", "-f", "busy", "stubborn"]), "busy\nstubborn\n");
    assert_eq!(rbuild_ok(&s.root, &["ps", "-aq"]), "");
}

#[test]
fn start_runs_again_on_the_kept_upper_dir() {
    let Some(s) = setup() else { return };
    let script = "echo x >> /count; wc -l < /count";
    assert_eq!(rbuild_ok(&s.root, &["run", "--name", "again", "bb", "sh", "-c", script]).trim(), "1");
    assert_eq!(rbuild_ok(&s.root, &["start", "-a", "again"]).trim(), "2");
    assert_eq!(rbuild_ok(&s.root, &["start", "again"]), "again\n");
    assert!(wait_for(10, || rbuild_ok(&s.root, &["ps", "-a"]).contains("Exited (0)")));
    assert_eq!(rbuild_ok(&s.root, &["run", "--rm", "bb", "true"]), "");
    assert_eq!(rbuild_ok(&s.root, &["diff", "again"]), "A /count\n");
}

#[test]
fn zombies_are_reaped() {
    let Some(s) = setup() else { return };
    let out = rbuild(
        &s.root,
        &["run", "--rm", "bb", "sh", "-c", "sleep 0 & sleep 0 & sh -c 'sleep 0 &' ; sleep 1; ps -o stat | grep -c Z"],
    );
    assert_eq!(text(&out.stdout).trim(), "0", "{}", text(&out.stderr));
}

#[test]
fn sigint_kills_and_tears_down_with_130() {
    let Some(s) = setup() else { return };
    let mut child = crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", &s.root)
        .env_remove("CI")
        .args(["run", "--name", "sleeper", "bb", "sleep", "100"])
        .spawn()
        .unwrap();
    assert!(wait_for(10, || rbuild_ok(&s.root, &["ps", "-q"]).lines().count() == 1), "never Up");
    // The runtime's state dir exists once the container is being set up; give init a moment.
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(no_mounts_under(&s.root));
    assert_eq!(std::fs::read_dir(s.root.join("run")).unwrap().count(), 0, "runtime state left behind");
    assert!(rbuild_ok(&s.root, &["ps", "-a"]).contains("Exited (130) "));
}

#[test]
fn run_it_drives_a_shell_through_a_pty() {
    if !require(have_tool("tmux"), "tmux (Debian package tmux)") {
        return;
    }
    let Some(s) = setup() else { return };
    let script = s.dir.join("pty.sh");
    let bin = crate::fixture::RBUILD;
    let d = s.dir.display();
    std::fs::write(
        &script,
        format!(
            "stty -g > {d}/before\nRBUILD_ROOT={root} {bin} run -it --name pty1 bb sh\necho $? > {d}/code\nstty -g > {d}/after\nsleep 60\n",
            root = s.root.display()
        ),
    )
    .unwrap();
    let socket = format!("rbuild-test-{}", std::process::id());
    let tmux = |args: &[&str]| Command::new("tmux").arg("-L").arg(&socket).args(args).output().unwrap();
    let started = tmux(&["new-session", "-d", "-s", "t", "-x", "100", "-y", "30", &format!("sh {}", script.display())]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    let pane = || text(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout);
    let prompt = wait_for(15, || pane().contains("/ #"));
    if prompt {
        tmux(&["send-keys", "-t", "t", "echo hi; exit 5", "Enter"]);
    }
    let done = wait_for(15, || s.dir.join("after").exists());
    let screen = pane();
    tmux(&["kill-server"]);
    assert!(prompt, "no shell prompt:\n{screen}");
    assert!(done, "rbuild run -it did not end:\n{screen}");
    assert!(screen.lines().any(|l| l.trim() == "hi"), "{screen}");
    assert_eq!(std::fs::read_to_string(s.dir.join("code")).unwrap().trim(), "5");
    // `logs` of a -t container: what its terminal showed.
    let logs = rbuild_ok(&s.root, &["logs", "pty1"]);
    assert!(logs.lines().any(|l| l.trim() == "hi"), "logs: {logs:?}");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("before")).unwrap(),
        std::fs::read_to_string(s.dir.join("after")).unwrap(),
        "terminal settings not restored"
    );
}

#[test]
fn a_killed_monitor_leaves_no_mounts_and_reads_as_exited() {
    let Some(s) = setup() else { return };
    let id = rbuild_ok(&s.root, &["run", "-d", "bb", "sleep", "100"]).trim().to_string();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.root.join("containers").join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(record["image"].as_str().map(|i| i.starts_with("sha256:")), Some(true), "{record}");
    let monitor = record["monitor_pid"].as_i64().expect("a running container records its monitor") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_for(10, || !Path::new(&format!("/proc/{monitor}")).exists()
        || std::fs::read_to_string(format!("/proc/{monitor}/stat")).is_ok_and(|s| s.contains(") Z"))));
    assert!(wait_for(10, || rbuild_ok(&s.root, &["ps", "-a"]).contains("Exited (137)")));
    assert!(no_mounts_under(&s.root));
    // Every container command cleans up the runtime state a killed rbuild left.
    assert_eq!(std::fs::read_dir(s.root.join("run")).unwrap().count(), 0);
    assert_eq!(rbuild_ok(&s.root, &["ps", "-lq"]), format!("{}\n", &id[..12]));
    rbuild_ok(&s.root, &["rm", &id]);
}

#[test]
fn export_to_stdout_matches_export_to_a_file() {
    let Some(s) = setup() else { return };
    rbuild_ok(&s.root, &["run", "--name", "c1", "bb", "sh", "-c", CHANGES]);
    let file = s.dir.join("c1.tar");
    rbuild_ok(&s.root, &["export", "--output", file.to_str().unwrap(), "c1"]);
    let out = rbuild(&s.root, &["export", "c1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(&file).unwrap());
    let mut names: Vec<String> = tar::Archive::new(out.stdout.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.iter().any(|n| n.trim_end_matches('/') == "file"), "{names:?}");
    assert!(!names.iter().any(|n| n.trim_end_matches('/') == "etc/passwd"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains(".wh.")), "{names:?}");
}

#[test]
fn stop_sends_the_images_stopsignal() {
    let Some(s) = setup() else { return };
    rbuild_ok(&s.root, &["run", "--name", "base", "bb", "true"]);
    rbuild_ok(&s.root, &["commit", "-c", "STOPSIGNAL SIGQUIT", "base", "quits"]);
    let script = "trap 'exit 7' QUIT; echo ready; sleep 100 & wait";
    rbuild_ok(&s.root, &["run", "-d", "--name", "q", "quits", "sh", "-c", script]);
    assert!(wait_for(10, || rbuild_ok(&s.root, &["logs", "q"]) == "ready\n"));
    rbuild_ok(&s.root, &["stop", "-t", "5", "q"]);
    assert!(rbuild_ok(&s.root, &["ps", "-a"]).contains("Exited (7) "));
}

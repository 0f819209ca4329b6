//! Teardown: SIGINT to a process running a container, and `kill -9` of that process followed
//! by `cleanup_stale`, each leave no state dir, no mount and no container process behind.
//! The process running the container is this test binary re-run on `container_child`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild::runtime::{cleanup_stale, Container, ContainerSpec, Rootfs, RuntimeError, StdioMode};

/// Runs a container from `RBUILD_CHILD_*` variables, printing its output; exits 130 when
/// interrupted. Only meaningful when started by the tests below.
#[test]
#[ignore = "entry point for the tests below, run in a child process"]
fn container_child() {
    let Ok(state) = std::env::var("RBUILD_CHILD_STATE") else {
        return;
    };
    let base = PathBuf::from(std::env::var("RBUILD_CHILD_BASE").expect("base"));
    let mut spec = ContainerSpec::new(
        "victim",
        Rootfs::Overlay { lower: vec![base.join("lower")], upper: base.join("upper"), work: base.join("work") },
        vec!["/bin/sh".into(), "-c".into(), "echo ready; sleep 100".into()],
        PathBuf::from(state),
    );
    spec.stdio = StdioMode::Lines(Box::new(|_, line, _| {
        println!("container: {}", String::from_utf8_lossy(line));
    }));
    match Container::new(spec).run() {
        Ok(exit) => std::process::exit(exit.code),
        Err(RuntimeError::Interrupted { .. }) => {
            println!("interrupted");
            std::process::exit(130)
        }
        Err(e) => panic!("{e}"),
    }
}

struct Victim {
    child: Child,
    state: PathBuf,
    out: BufReader<std::process::ChildStdout>,
    _tmp: tempfile::TempDir,
}

fn start_victim() -> Option<Victim> {
    if !crate::fixture::require(crate::fixture::is_root(), "root (overlay mounts, namespaces)")
        || !crate::fixture::require(crate::fixture::busybox_path().is_some(), "busybox-static")
    {
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().to_path_buf();
    crate::fixture::busybox_rootfs(&base.join("lower"));
    std::fs::create_dir(base.join("upper")).expect("upper");
    std::fs::create_dir(base.join("work")).expect("work");
    let state = base.join("state");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            &crate::fixture::test_name(module_path!(), "container_child"),
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RBUILD_CHILD_STATE", &state)
        .env("RBUILD_CHILD_BASE", &base)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read child");
        assert!(n > 0, "child ended before the container was ready");
        if line.contains("container: ready") {
            break;
        }
    }
    Some(Victim { child, state, out, _tmp: tmp })
}

/// The container's setup process pid, from its state record.
fn setup_pid(state: &Path) -> i32 {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("victim/container.json")).expect("record")).expect("json");
    record["setup_pid"].as_i64().expect("setup pid") as i32
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: i32) {
    let start = Instant::now();
    while !gone(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_nothing_left(state: &Path) {
    let left: Vec<_> =
        std::fs::read_dir(state).map(|d| d.map(|e| e.expect("entry").file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "left in the state dir: {left:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let state_text = state.to_str().expect("utf8");
    assert!(!mountinfo.contains(state_text), "mount left under {state_text}");
}

#[test]
fn sigint_kills_the_container_and_tears_everything_down() {
    let Some(mut victim) = start_victim() else {
        return;
    };
    let pid = setup_pid(&victim.state);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT");
    let status = victim.child.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut victim.out, &mut rest).expect("read");
    assert_eq!(status.code(), Some(130), "child output: {rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    wait_gone(pid);
    assert_nothing_left(&victim.state);
}

#[test]
fn kill_9_then_cleanup_stale_leaves_nothing() {
    let Some(mut victim) = start_victim() else {
        return;
    };
    let pid = setup_pid(&victim.state);
    victim.child.kill().expect("kill -9");
    victim.child.wait().expect("wait");
    // The container dies with rbuild (PR_SET_PDEATHSIG); its state dir stays behind.
    wait_gone(pid);
    assert!(victim.state.join("victim").exists());
    let report = cleanup_stale(&victim.state).expect("cleanup");
    assert_eq!(report.removed, vec!["victim".to_string()]);
    assert_nothing_left(&victim.state);
    // A second pass finds nothing.
    assert_eq!(cleanup_stale(&victim.state).expect("cleanup").removed.len(), 0);
}

//! Interrupting builds, as root against a temp store with a busybox base: SIGINT during a RUN
//! exits 130, tears the container down and keeps earlier steps cached; `kill -9` while a large
//! layer is being committed leaves the store consistent and nothing mounted.
//!
//! Needs root and /bin/busybox; skips with a message otherwise, fails under CI=true.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{rbuild, rbuild_ok, store_with_busybox};

/// Starts `rbuild build CONTEXT` with stdout piped.
fn spawn_build(root: &Path, context: &Path) -> Child {
    crate::fixture::rbuild_command()
        .env("RBUILD_ROOT", root)
        .args(["build"])
        .arg(context)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild")
}

/// Reads the child's stdout until a line starts with `prefix` (or 60 s pass); returns what
/// was read.
fn wait_for_line(child: &mut Child, prefix: &str, seen: &mut Vec<String>) -> bool {
    let Some(stdout) = child.stdout.as_mut() else { return false };
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {
                seen.push(line.trim_end().to_string());
                if line.starts_with(prefix) {
                    return true;
                }
            }
        }
    }
    false
}

fn mounts_under(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let needle = path.to_string_lossy().into_owned();
    text.lines().filter(|l| l.contains(&needle)).map(str::to_string).collect()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

#[test]
fn sigint_during_a_run_exits_130_and_keeps_earlier_steps() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo one > /one\nRUN echo started; sleep 100\n")
        .expect("write");
    let mut child = spawn_build(&root, &ctx);
    let mut seen = Vec::new();
    assert!(wait_for_line(&mut child, "started", &mut seen), "the RUN never started: {seen:?}");
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
    rbuild_ok(&root, &["store", "check"]);
    // The step before the interrupted one is cached.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo one > /one\nRUN true\n").expect("write");
    let again = rbuild_ok(&root, &["build", ctx.to_str().expect("utf8")]);
    assert_eq!(again.lines().filter(|l| *l == " ---> Using cache").count(), 1, "{again}");
}

#[test]
fn kill_9_during_a_layer_commit_leaves_the_store_consistent() {
    let Some((t, root)) = store_with_busybox() else { return };
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    // 64 MiB of random data: compressing it takes long enough to be killed in the middle.
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN head -c 67108864 /dev/urandom > /big\n").expect("write");
    for delay_ms in [0u64, 150, 400] {
        let mut child = spawn_build(&root, &ctx);
        let mut seen = Vec::new();
        assert!(wait_for_line(&mut child, "Removing intermediate container", &mut seen), "no commit started: {seen:?}");
        std::thread::sleep(Duration::from_millis(delay_ms));
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
        assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
        // The next command cleans what the killed one left; the store is consistent.
        let check = rbuild(&root, &["store", "check"]);
        assert!(check.status.success(), "after kill at +{delay_ms} ms: {}", String::from_utf8_lossy(&check.stdout));
        let images = rbuild_ok(&root, &["images", "-a", "-q"]);
        for id in images.lines() {
            rbuild_ok(&root, &["history", id]);
        }
    }
    // A full build still works afterwards.
    rbuild_ok(&root, &["build", ctx.to_str().expect("utf8")]);
    rbuild_ok(&root, &["store", "check"]);
}

//! `-it`: an interactive busybox shell in a container on a pseudo-terminal, driven through
//! tmux: typed input reaches it, the window size (and a resize) is passed on, the exit code
//! comes back, and the terminal leaves raw mode afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild::runtime::{Container, ContainerSpec, Rootfs, StdioMode};

/// Runs an interactive shell in a container on a pty; started by the test below in tmux.
#[test]
#[ignore = "entry point for the test below, run inside tmux"]
fn pty_child() {
    let Ok(base) = std::env::var("RBUILD_PTY_BASE") else {
        return;
    };
    let base = PathBuf::from(base);
    let mut spec = ContainerSpec::new(
        "pty",
        Rootfs::Overlay { lower: vec![base.join("lower")], upper: base.join("upper"), work: base.join("work") },
        vec!["/bin/sh".into()],
        base.join("state"),
    );
    spec.env = vec!["TERM=xterm".into()];
    spec.stdio = StdioMode::Pty;
    match Container::new(spec).run() {
        Ok(exit) => println!("\r\npty-exit: {}", exit.code),
        Err(e) => println!("\r\npty-error: {e}"),
    }
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for_screen(session: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if screen.contains(needle) {
            return screen;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{needle:?} never appeared; screen:\n{screen}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[test]
fn interactive_shell_on_a_pty() {
    if !crate::fixture::require(crate::fixture::is_root(), "root (overlay mounts, namespaces)")
        || !crate::fixture::require(crate::fixture::busybox_path().is_some(), "busybox-static")
        || !crate::fixture::require(Command::new("tmux").arg("-V").output().is_ok(), "tmux")
    {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path();
    crate::fixture::busybox_rootfs(&base.join("lower"));
    std::fs::create_dir(base.join("upper")).expect("upper");
    std::fs::create_dir(base.join("work")).expect("work");
    let exe = std::env::current_exe().expect("exe");
    let after = base.join("stty-after");
    let command = format!(
        "RBUILD_PTY_BASE={} {} --exact {} --ignored --nocapture --test-threads=1; stty -a > {}; sleep 60",
        base.display(),
        exe.display(),
        crate::fixture::test_name(module_path!(), "pty_child"),
        after.display()
    );
    let session = Session(format!("rbuild-pty-{}", std::process::id()));
    tmux(&["new-session", "-d", "-s", &session.0, "-x", "100", "-y", "30", &command]);

    wait_for_screen(&session.0, "/ #");
    tmux(&["send-keys", "-t", &session.0, "echo hello-$((6*7))", "Enter"]);
    wait_for_screen(&session.0, "hello-42");
    tmux(&["send-keys", "-t", &session.0, "stty size", "Enter"]);
    wait_for_screen(&session.0, "30 100");
    tmux(&["resize-window", "-t", &session.0, "-x", "80", "-y", "20"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["send-keys", "-t", &session.0, "clear; stty size", "Enter"]);
    wait_for_screen(&session.0, "20 80");
    tmux(&["send-keys", "-t", &session.0, "exit 7", "Enter"]);
    wait_for_screen(&session.0, "pty-exit: 7");

    let stty = wait_for_file(&after);
    let flags: Vec<&str> = stty.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig", "opost"] {
        assert!(flags.contains(&flag), "terminal left without {flag}: {stty}");
    }
}
